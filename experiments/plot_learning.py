"""Learning curves (paper Fig. 4): training throughput and return against environment steps,
from the ``metrics.jsonl`` of ``jaxmac train`` run directories.

python experiments/plot_learning.py runs/mappo runs/llm4mac --out results/learning.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of jaxmac train")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for run in args.runs:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [r["env_steps"] for r in rows]
        for ax, metric in zip(axes, ("throughput", "return"), strict=True):
            ax.plot(steps, [math.nan if r[metric] is None else r[metric] for r in rows], label=run.name)
    for ax, label in zip(axes, ("training throughput (SDUs / TTI)", "episode return"), strict=True):
        ax.set_xlabel("environment steps (episode-TTIs)")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: no overlapping labels
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
