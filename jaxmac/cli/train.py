"""``jaxmac train`` and ``jaxmac sweep``: PPO runs of a learner (docs/SPEC.md §3-4)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jaxmac.agents import LLMAgent, MAPPOAgent
from jaxmac.algorithms import HPARAM_RANGES, HParams, PPOConfig
from jaxmac.cli.options import add_env_options, parse_ues
from jaxmac.env import REWARD_PRESETS
from jaxmac.training import METHODS, SWEEPABLE, RunConfig, TrainingDiverged, train_run

#: Named training settings (option dest -> value); see ``--preset``. ``llm4mac-cpu``: the tiny
#: LLM4MAC settings that made its return climb on a 2-core CPU in under 20 minutes (README,
#: "LLM4MAC on this CPU"; it does not reach the paper's results). ``vf_coef`` 0.02 departs from
#: docs/SPEC.md §3's 0.5: with returns up to ~100 the value loss otherwise swamps the shared T5's gradient.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "llm4mac-cpu": {
        "algo": "llm4mac",
        "model": "tiny",
        "ues": [2, 3, 4, 5],
        "episodes": 512,
        "minibatches": 2,
        "epochs": 2,
        "lr": 1e-3,
        "vf_coef": 0.02,
        "updates": 20,
        "chunk": 5,
        "greedy": True,
    },
}


#: Default evaluation episodes per UE count at the end of a run (a language model's evaluation
#: costs a T5 forward pass per distinct prompt, so it gets fewer).
EVAL_EPISODES = 500
LLM_EVAL_EPISODES = 100


def _describe(options: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return f"{min(value)}-{max(value)}" if isinstance(value, list) else str(value)

    flags = (f"--{k.replace('_', '-')}" + ("" if v is True else f" {show(v)}") for k, v in options.items())
    return " ".join(flags)


def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def parse_sweep(text: str) -> tuple[str, tuple[float, ...]]:
    """``"lr=1e-4,3e-4"`` -> ("lr", (1e-4, 3e-4))."""
    name, eq, values = text.partition("=")
    if not eq or name not in SWEEPABLE:
        raise argparse.ArgumentTypeError(
            f"--sweep must be NAME=V1,V2,... with NAME from {list(SWEEPABLE)}; got {text!r}"
        )
    try:
        return name, _float_list(values)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sweep values must be numbers, got {values!r}") from None


def add_train_options(parser: argparse.ArgumentParser) -> None:
    hp, ppo = HParams(), PPOConfig()
    parser.add_argument(
        "--out", type=Path, required=True, help="run directory (config, checkpoints, metrics)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its newest checkpoint"
    )
    parser.add_argument(
        "--preset",
        choices=sorted(TRAIN_PRESETS),
        default=None,
        help="named settings (options given explicitly override them): "
        + "; ".join(f"{k}: {_describe(v)}" for k, v in TRAIN_PRESETS.items()),
    )
    parser.add_argument("--algo", choices=sorted(METHODS), default="mappo", help="learner")
    parser.add_argument("--no-comm", action="store_true", help="No-Comm.: every message forced to null")
    parser.add_argument(
        "--model", default="tiny", help="llm4mac: tiny, flan-t5-small|base|large or a checkpoint dir"
    )
    parser.add_argument("--no-pretrained", action="store_true", help="llm4mac: random weights (Abl. PK)")
    parser.add_argument(
        "--no-sie", action="store_true", help="llm4mac: no identity in the prompts (Abl. SIE)"
    )
    parser.add_argument("--raw-logits", action="store_true", help="llm4mac: score candidates by raw logits")
    parser.add_argument(
        "--value-hidden", type=int, default=LLMAgent.value_hidden, help="llm4mac: value head width"
    )
    parser.add_argument(
        "--dedup-chunk",
        type=int,
        default=LLMAgent.dedup_chunk,
        help="llm4mac: distinct prompts per model call (sets peak memory)",
    )
    parser.add_argument("--hidden", type=int, default=MAPPOAgent.hidden, help="mappo: MLP width")
    parser.add_argument(
        "--ues", type=parse_ues, default=[2, 3, 4, 5], help="training UE range LO-HI (default 2-5)"
    )
    parser.add_argument("--episodes", type=int, default=ppo.num_envs, help="parallel episodes")
    parser.add_argument("--updates", type=int, default=None, help="PPO updates in total (default 100)")
    parser.add_argument("--rollout-len", type=int, default=None, help="TTIs per update (default episode-len)")
    parser.add_argument("--epochs", type=int, default=ppo.epochs)
    parser.add_argument("--minibatches", type=int, default=ppo.minibatches)
    for name in HPARAM_RANGES:
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=float(getattr(hp, name)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--chunk", type=int, default=10, help="updates per compiled call (log/checkpoint period)"
    )
    parser.add_argument(
        "--eval-every", type=int, default=0, help="evaluate every N chunks (0: at the end only)"
    )
    parser.add_argument(
        "--eval-ues", type=parse_ues, default=None, help="evaluation UE counts (default 1..max-ues)"
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=None,
        help=f"evaluation episodes per UE count (default {EVAL_EPISODES}; llm4mac {LLM_EVAL_EPISODES})",
    )
    parser.add_argument("--greedy", action="store_true", help="evaluate the most likely decisions")
    add_env_options(parser)


def config_from_args(args: argparse.Namespace, seeds: tuple[int, ...], grid: dict[str, Any]) -> RunConfig:
    lo, hi = min(args.ues), max(args.ues)
    if args.ues != list(range(lo, hi + 1)):
        raise ValueError(
            f"--ues must be one range LO-HI for training (counts are drawn from it), got {args.ues}"
        )
    agent: dict[str, Any] = (
        {
            "model": args.model,
            "pretrained": not args.no_pretrained,
            "sie": not args.no_sie,
            "raw_logits": args.raw_logits,
            "value_hidden": args.value_hidden,
            "dedup_chunk": args.dedup_chunk,
        }
        if args.algo == "llm4mac"
        else {"hidden": args.hidden}
    )
    env = {
        k: getattr(args, k)
        for k in ("max_ues", "buffer_size", "episode_len", "ucm_vocab", "dcm_vocab", "history")
    }
    return RunConfig(
        algo=args.algo,
        no_comm=args.no_comm,
        agent=agent,
        env=env,
        env_params={
            "n_min": lo,
            "n_max": hi,
            "p_arrival": args.p_arrival,
            "tbler": args.tbler,
            "churn": args.churn,
            **REWARD_PRESETS[args.reward],
        },
        algorithm={
            "num_envs": args.episodes,
            "rollout_len": args.rollout_len,
            "epochs": args.epochs,
            "minibatches": args.minibatches,
            "updates": 100 if args.updates is None else args.updates,
        },
        hparams={n: getattr(args, n) for n in HPARAM_RANGES},
        seeds=seeds,
        grid=grid,
        chunk=args.chunk,
        eval_every=args.eval_every,
        eval_ues=None if args.eval_ues is None else tuple(args.eval_ues),
        eval_episodes=(LLM_EVAL_EPISODES if args.algo == "llm4mac" else EVAL_EPISODES)
        if args.eval_episodes is None
        else args.eval_episodes,
        greedy=args.greedy,
    )


def run_command(args: argparse.Namespace, seeds: tuple[int, ...], grid: dict[str, Any]) -> int:
    console = Console(stderr=True)
    try:
        if args.resume and (args.out / "config.json").is_file():
            config = RunConfig.load(args.out)
            if args.updates is not None:
                config = dataclasses.replace(config, algorithm={**config.algorithm, "updates": args.updates})
        else:
            config = config_from_args(args, seeds, grid)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    members = len(config.members())
    console.print(
        f"{args.out}: {config.algo}{' no-comm' if config.no_comm else ''}, {members} run(s), "
        f"{config.algorithm}"
    )
    with Progress(
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    ) as bar:
        task = bar.add_task("train", total=config.updates, status="compiling")

        def on_chunk(done: int, total: int, info: dict[str, float]) -> None:
            status = (
                f"{info['env_steps_per_s']:,.0f} env-steps/s  return {info['return']:.2f}  "
                f"throughput {info['throughput']:.3f}  entropy {info['entropy']:.3f}  loss {info['loss']:.3f}"
            )
            bar.update(task, completed=done, total=total, status=status)

        try:
            result = train_run(config, args.out, resume=args.resume, log=console.print, on_chunk=on_chunk)
        except (TrainingDiverged, FileExistsError, FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
    console.print(
        f"{result.updates} updates; {result.env_steps_per_s:,.0f} env-steps/s while training "
        f"(compile {result.compile_s:.1f} s excluded)"
    )
    if result.evaluation is not None:
        print(result.evaluation.format())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    return run_command(args, (args.seed,), {})


def cmd_sweep(args: argparse.Namespace) -> int:
    return run_command(args, tuple(args.seeds), dict(args.sweep))


def add_train_parsers(sub: argparse._SubParsersAction) -> dict[str, argparse.ArgumentParser]:
    train = sub.add_parser("train", help="train a learner with PPO (one compiled loop)")
    add_train_options(train)
    train.set_defaults(func=cmd_train)
    sweep = sub.add_parser("sweep", help="train seeds x swept values together (vmapped)")
    add_train_options(sweep)
    sweep.add_argument("--seeds", type=parse_ues, default=[0], help="seeds, e.g. 0-3")
    sweep.add_argument(
        "--sweep",
        type=parse_sweep,
        action="append",
        default=[],
        help=f"NAME=V1,V2 with NAME from {list(SWEEPABLE)}",
    )
    sweep.set_defaults(func=cmd_sweep)
    return {"train": train, "sweep": sweep}
