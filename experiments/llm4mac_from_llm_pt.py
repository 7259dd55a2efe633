"""LLM4MAC's PPO starting from a T5 that already reads its prompts: an LLM-PT run's.

The paper's LLM4MAC fine-tunes a pretrained Flan-T5; the tiny model here is drawn at random and,
trained by PPO alone, does not learn to read its SIE prompts in a CPU budget (README, "LLM4MAC
on this CPU"). This runs the stand-in for the pretraining, then the paper's method, each stage a
``jaxmac`` command (printed before it runs):

1. ``jaxmac train --preset llm-pt-cpu --ues 1-2``, 20 updates, then ``jaxmac export``: a first
   supervised stage on the Baseline's decisions at one and two UEs (a curriculum: the BS learns
   to read its target's line where the prompt lists one or two UEs);
2. ``jaxmac train --preset llm-pt-cpu --model <that export> --ues 1-5 --frequency-power 1
   --demo-noise 0.05 --ema-updates 5 --ue-batch-size 16``, 60 updates: the same at 1-5 UEs,
   from the first stage's T5, each pair drawn as often as it was recorded (the decisions of
   many UEs weigh as much as they count), with LLM-PT's ten-minute plan's settings (README,
   "LLM-PT on this CPU"): demonstrations with 5% of their decisions random, the average of
   the last five updates' models, 16 UE pairs per step beside 64 BS pairs (``--pt-extra``);
3. ``jaxmac export``: its T5 as a checkpoint directory;
4. ``jaxmac train --preset llm4mac-cpu --model <that directory> --lr 1e-4
   --checkpoint-head-scale 0.3``: PPO on the team reward at 2-5 UEs (a pretrained model is
   fine-tuned at a tenth of the preset's learning rate; its LM head at 0.3 of its trained scale
   spreads the imitated decisions, so that PPO explores other ones);
5. ``jaxmac eval``: the PPO run greedy beside ``random``, ``contention_free`` and ``oracle`` on
   the same episodes, at every UE count.

``--pt-updates 40 --pt-extra ''`` is the pipeline before 2026-12-02 15:00 UTC; ``--warmup-updates 0
--pt-updates 200 --pt-extra ''`` the one before it, without the first stage (LLM-PT on 1-5 UEs
from the drawn T5).

Each stage's run directory is kept under ``--out``; a rerun continues an interrupted stage and
skips finished ones (delete ``--out/eval.json`` to evaluate again). Prints each stage's
wall-clock and writes ``--out/stages.json``.

    python experiments/llm4mac_from_llm_pt.py --out runs/llm4mac-from-pt
    python experiments/plot_learning.py runs/llm4mac-from-pt/llm4mac --out learning.png
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path


def _updates_done(run: Path) -> int:
    rows = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
    return json.loads(rows[-1])["update"] if rows else 0


def _train(run: Path, updates: int, options: list[str]) -> list[str] | None:
    """The ``jaxmac train`` command of a stage, resuming it; None once it has ``updates``."""
    if (run / "config.json").is_file():
        if _updates_done(run) >= updates and (run / "eval.json").is_file():
            return None
        return ["train", "--resume", "--updates", str(updates), "--out", str(run)]
    return ["train", *options, "--updates", str(updates), "--out", str(run)]


def _export(run: Path, out: Path) -> list[str] | None:
    """The ``jaxmac export`` command of a stage's T5; None once ``out`` exists."""
    return None if out.is_dir() else ["export", "--checkpoint", str(run), "--out", str(out)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory of the stages' runs")
    parser.add_argument("--warmup-ues", default="1-2", help="UE counts of LLM-PT's first stage")
    parser.add_argument(
        "--warmup-updates", type=int, default=20, help="updates of LLM-PT's first stage (0: no first stage)"
    )
    parser.add_argument("--pt-updates", type=int, default=60, help="LLM-PT updates after the first stage")
    parser.add_argument(
        "--pt-ues",
        default="1-5",
        help="UE counts of LLM-PT's demonstrations (its preset's 2-5 never shows the BS a prompt about "
        "one UE, and it then never grants at 1 UE)",
    )
    parser.add_argument(
        "--pt-frequency-power",
        type=float,
        default=1.0,
        help="the second LLM-PT stage's --frequency-power (0: every distinct pair drawn alike)",
    )
    parser.add_argument(
        "--pt-extra",
        default="--demo-noise 0.05 --ema-updates 5 --ue-batch-size 16",
        help="more jaxmac train options of the second LLM-PT stage, one string ('' for none)",
    )
    parser.add_argument("--ppo-updates", type=int, default=25, help="LLM4MAC PPO updates (on 2-5 UEs)")
    parser.add_argument(
        "--ppo-head-scale",
        type=float,
        default=0.3,
        help="PPO's --checkpoint-head-scale (1: the LLM-PT model's decisions as sharp as trained)",
    )
    parser.add_argument("--ppo-lr", type=float, default=1e-4, help="PPO learning rate")
    parser.add_argument("--eval-episodes", type=int, default=64, help="episodes per UE count")
    parser.add_argument("--seed", type=int, default=0, help="every training stage's --seed")
    args = parser.parse_args(argv)
    for name in ("pt_updates", "ppo_updates", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(args, name)}")
    if args.warmup_updates < 0:
        parser.error(f"--warmup-updates must be an integer >= 0, got {args.warmup_updates}")
    # checked here as well as by jaxmac train: a bad PPO option would otherwise stop the run
    # after its LLM-PT stages
    if not (math.isfinite(args.ppo_head_scale) and args.ppo_head_scale > 0):
        parser.error(f"--ppo-head-scale must be a finite number > 0, got {args.ppo_head_scale}")
    if not (math.isfinite(args.pt_frequency_power) and args.pt_frequency_power >= 0):
        parser.error(f"--pt-frequency-power must be a finite number >= 0, got {args.pt_frequency_power}")
    warm, warm_t5 = args.out / "llm-pt-warmup", args.out / "llm-pt-warmup-t5"
    pt, t5, ppo = args.out / "llm-pt", args.out / "llm-pt-t5", args.out / "llm4mac"

    seed = ["--seed", str(args.seed)]

    def supervised(ues: str) -> list[str]:  # an LLM-PT stage's options; 32 closing episodes per count
        return ["--preset", "llm-pt-cpu", "--ues", ues, "--eval-ues", ues, "--eval-episodes", "32", *seed]

    warmup = {
        "llm-pt-warmup": _train(warm, args.warmup_updates, supervised(args.warmup_ues)),
        "export-warmup": _export(warm, warm_t5),
    }
    from_warmup = ["--model", str(warm_t5)] if args.warmup_updates else []
    ppo_options = ["--preset", "llm4mac-cpu", "--model", str(t5), "--lr", str(args.ppo_lr), *seed]
    ppo_options += ["--checkpoint-head-scale", str(args.ppo_head_scale)]
    pt_options = [*supervised(args.pt_ues), *from_warmup, "--frequency-power", str(args.pt_frequency_power)]
    pt_options += shlex.split(args.pt_extra)
    stages = {
        **(warmup if args.warmup_updates else {}),
        "llm-pt": _train(pt, args.pt_updates, pt_options),
        "export": _export(pt, t5),
        "llm4mac": _train(ppo, args.ppo_updates, [*ppo_options, "--eval-ues", "1-8", "--eval-episodes", "8"]),
        "eval": None
        if (args.out / "eval.json").is_file()
        else [
            *("eval", "--checkpoint", str(ppo), "--greedy", "--policy", "random,contention_free,oracle"),
            *("--ues", "1-8", "--episodes", str(args.eval_episodes), "--out", str(args.out / "eval.json")),
        ],
    }
    record = args.out / "stages.json"
    seconds = json.loads(record.read_text()) if record.is_file() else {}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, command in stages.items():
        if command is None:
            print(f"{name}: done before ({seconds.get(name, float('nan')):.0f} s)")
            continue
        print("$ jaxmac " + shlex.join(command), flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "jaxmac.cli.main", *command])
        if done.returncode != 0:
            raise SystemExit(f"error: stage {name} failed (exit {done.returncode}); rerun to continue it")
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        record.write_text(json.dumps(seconds, indent=1) + "\n")
    print("\n".join(f"{name:>8}: {s / 60:5.1f} min" for name, s in seconds.items()))
    print(f"{'total':>8}: {sum(seconds.values()) / 60:5.1f} min")


if __name__ == "__main__":
    main()
