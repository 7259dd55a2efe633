"""Throughput vs active-UE count (paper Fig. 3) from ``jaxmac eval --out`` JSON rows.

python experiments/plot_throughput.py results/scripted.json --out results/throughput.png
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(rows: list[dict], out: Path, title: str) -> None:
    by_policy: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_policy[row["policy"]].append(row)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for policy, points in by_policy.items():
        points.sort(key=lambda r: r["n_ues"])
        ax.errorbar(
            [r["n_ues"] for r in points],
            [r["throughput"] for r in points],
            yerr=[r["throughput_ci95"] for r in points],
            marker="o",
            capsize=3,
            label=policy,
        )
    ax.set_xlabel("active UEs")
    ax.set_ylabel("throughput (SDUs / TTI)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="JSON files written by `jaxmac eval --out`")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--title", default="Throughput per active-UE count (95% CI)")
    args = parser.parse_args(argv)
    rows = [row for path in args.inputs for row in json.loads(path.read_text())]
    plot(rows, args.out, args.title)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
