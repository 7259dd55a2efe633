"""Learning curves (paper Fig. 4): training throughput and return against environment steps,
from the ``metrics.jsonl`` of ``jaxmac train`` run directories. Runs of LLM-PT (supervised, no
environment steps) are drawn as held-out exact-answer accuracy (both agent groups, the UEs', the
BS's) and training loss against updates instead.

python experiments/plot_learning.py runs/mappo runs/llm4mac --out results/learning.png
python experiments/plot_learning.py runs/llm-pt --out results/llm_pt_learning.png
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
    runs = {
        run: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in args.runs
    }
    supervised = {"val_accuracy" in rows[0] for rows in runs.values()}
    if len(supervised) > 1:
        raise SystemExit("error: plot supervised (llm-pt) runs apart from the reinforcement-learning ones")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    if supervised.pop():
        for run, rows in runs.items():
            updates = [r["update"] for r in rows]
            for metric, style in (("val_accuracy", "-"), ("ue_val_accuracy", ":"), ("bs_val_accuracy", "--")):
                axes[0].plot(updates, [r[metric] for r in rows], style, label=f"{run.name} {metric}")
            axes[1].plot(updates, [r["loss"] for r in rows], label=run.name)
        labels = ("held-out exact-answer accuracy", "training loss (token cross-entropy)")
        for ax, label in zip(axes, labels, strict=True):
            ax.set_xlabel("update")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend()
        axes[1].set_yscale("log")
    else:
        for run, rows in runs.items():
            steps = [r["env_steps"] for r in rows]
            for ax, metric in zip(axes, ("throughput", "return"), strict=True):
                ax.plot(steps, [math.nan if r[metric] is None else r[metric] for r in rows], label=run.name)
        for ax, label in zip(axes, ("training throughput (SDUs / TTI)", "episode return"), strict=True):
            ax.set_xlabel("environment steps (episode-TTIs)")
            ax.set_ylabel(label)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(
                matplotlib.ticker.NullFormatter()
            )  # decades only: no overlapping labels
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
