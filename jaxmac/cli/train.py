"""``jaxmac train`` and ``jaxmac sweep``: training runs of a learned method (docs/SPEC.md §3-4);
the method's own options come from the settings it declares (``jaxmac.training.METHODS``)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jaxmac.cli.method_options import METHOD_OPTIONS, add_method_option, method_settings
from jaxmac.cli.options import (
    add_cluster_options,
    add_env_options,
    add_sink_options,
    make_directory,
    parse_ues,
    sink_options,
)
from jaxmac.cli.resume import resumed_config
from jaxmac.distributed import is_main
from jaxmac.env import REWARD_PRESETS
from jaxmac.training import (
    DEFAULT_STOP_IF,
    METHODS,
    SWEEPABLE,
    CheckpointNotWritten,
    DamagedCheckpoint,
    RunConfig,
    RunLocked,
    TrainingDiverged,
    method,
    train_run,
)

#: Named training settings (option dest -> value); see ``--preset``. ``llm4mac-cpu``: the tiny
#: LLM4MAC settings of the README's "LLM4MAC on this CPU" (2026-12-01): 45 updates of 32 episodes,
#: the ones that fit in 20 minutes here. It does not reach the paper's results: with the paper's SIE
#: prompts the tiny random T5 did not learn in that budget; with the Abl. SIE prompts the same
#: settings did (sampled); with ``--model`` an exported LLM-PT run, ``--lr`` 1e-4 and
#: ``--checkpoint-head-scale 0.3`` (``experiments/llm4mac_from_llm_pt.py``) 25 updates beat
#: ``random`` at 1-8 UEs and ``contention_free`` at 1-3. Departures from
#: docs/SPEC.md §3, each explained in the README: ``gamma`` 0.8 (a delivery is rewarded in the TTI
#: of its transmission), the value head on stop-gradient states (``detach_value``: the value loss
#: does not steer the shared T5), a drawn LM head at 0.1 of its scale (a near-uniform start and a
#: gentle first update) and a value head 256 wide instead of GLAM's 1024 (at 1024 its multiply-adds
#: per prompt are about a fifth of the tiny encoder's over an 83-token prompt).
#: ``llm-pt-cpu``: LLM-PT's supervised fine-tuning of the tiny T5 to the Baseline's level: 200
#: updates, 98.5-100% of ``contention_free`` at 2-5 UEs in about 30 minutes on a 2-core CPU (README,
#: "LLM-PT on this CPU"; its first 80 updates, the earlier length, stop on the BS's plateau).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "llm4mac-cpu": {
        "algo": "llm4mac",
        "model": "tiny",
        "ues": [2, 3, 4, 5],
        "episodes": 32,
        "lr": 1e-3,
        "gamma": 0.8,
        "head_scale": 0.1,
        "detach_value": True,
        "value_hidden": 256,
        "updates": 45,
        "chunk": 5,
    },
    "llm-pt-cpu": {
        "algo": "llm-pt",
        "model": "tiny",
        "ues": [2, 3, 4, 5],
        "episodes": 256,
        "batch_size": 64,
        "train_steps": 25,
        "lr": 1e-3,
        "updates": 200,
        "chunk": 20,
        "eval_ues": [2, 3, 4, 5],
    },
}


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
    parser.add_argument(
        "--out", type=Path, required=True, help="run directory (config, checkpoints, metrics)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its newest checkpoint"
    )
    parser.add_argument(
        "--previous-checkpoint",
        action="store_true",
        help="with --resume: a newest checkpoint that cannot be read is set aside, and the run "
        "continues from the one before",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a YAML file of these options by name (e.g. 'lr: 3e-4', 'ues: 2-5'); options typed "
        "here override it, and it overrides --preset",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(TRAIN_PRESETS),
        default=None,
        help="named settings (options given explicitly override them): "
        + "; ".join(f"{k}: {_describe(v)}" for k, v in TRAIN_PRESETS.items()),
    )
    parser.add_argument("--algo", choices=sorted(METHODS), default="mappo", help="learned method")
    parser.add_argument("--no-comm", action="store_true", help="No-Comm.: every message forced to null")
    parser.add_argument(
        "--ues", type=parse_ues, default=[2, 3, 4, 5], help="training UE range LO-HI (default 2-5)"
    )
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
    defaults = ", ".join(f"{algo}: {m.eval_episodes}" for algo, m in METHODS.items())
    greedy = ", ".join(algo for algo, m in METHODS.items() if m.greedy)
    parser.add_argument(
        "--eval-episodes", type=int, default=None, help=f"evaluation episodes per UE count ({defaults})"
    )
    parser.add_argument(
        "--greedy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"evaluate the most likely decisions (--no-greedy: sample them; default: {greedy} greedy, "
        "the others sampled)",
    )
    parser.add_argument(
        "--stop-if",
        action="append",
        default=None,
        help="stop before saving when an update's metric crosses a bound, e.g. loss>1e6 or "
        f"entropy<0.01 (repeatable; default {' '.join(DEFAULT_STOP_IF)}; a non-finite loss always stops)",
    )
    group = parser.add_argument_group("method settings (each applies to the methods it names)")
    for dest, (f, defaults) in METHOD_OPTIONS.items():
        add_method_option(group, dest, f, defaults)
    add_env_options(parser)
    add_sink_options(parser)
    add_cluster_options(parser)


def config_from_args(args: argparse.Namespace, seeds: tuple[int, ...], grid: dict[str, Any]) -> RunConfig:
    lo, hi = min(args.ues), max(args.ues)
    if args.ues != list(range(lo, hi + 1)):
        raise ValueError(
            f"--ues must be one range LO-HI for training (counts are drawn from it), got {args.ues}"
        )
    env = {
        k: getattr(args, k)
        for k in ("max_ues", "buffer_size", "episode_len", "ucm_vocab", "dcm_vocab", "history")
    }
    config = RunConfig(
        algo=args.algo,
        no_comm=args.no_comm,
        env=env,
        env_params={
            "n_min": lo,
            "n_max": hi,
            "p_arrival": args.p_arrival,
            "tbler": args.tbler,
            "churn": args.churn,
            **REWARD_PRESETS[args.reward],
        },
        **method_settings(args),
        seeds=seeds,
        grid=grid,
        chunk=args.chunk,
        eval_every=args.eval_every,
        eval_ues=None if args.eval_ues is None else tuple(args.eval_ues),
        eval_episodes=method(args.algo).eval_episodes if args.eval_episodes is None else args.eval_episodes,
        greedy=method(args.algo).greedy if args.greedy is None else args.greedy,
        stop_if=DEFAULT_STOP_IF if args.stop_if is None else tuple(args.stop_if),
    )
    # a language run pads its training prompts to its own UEs (a --resume may not raise n_max past them)
    return dataclasses.replace(config, prompt_ues=config.n_max()) if config.method.language else config


def make_run_directory(out: Path) -> None:
    """Create the run directory ``--out``, or fail before any work when it cannot be one (a
    file, a path under a file, an unwritable place)."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} is a file; give a run directory (created if missing)")
    make_directory(out, out)


def _os_error(e: OSError) -> str:
    """One line for a file-system error: the OS's reason and the path it names."""
    if e.strerror is None:  # raised by jaxmac with a whole message
        return str(e)
    where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
    return f"{where}: {e.strerror}; the run's checkpoints so far are intact (--resume continues)"


#: The metrics the progress line shows, those a method reports, in this order.
SHOWN_METRICS = ("return", "throughput", "loss", "val_loss", "val_accuracy")


def _status(info: dict[str, float]) -> str:
    """The progress line after a chunk: the training speed and the chunk's last metrics."""
    rate = info["env_steps_per_s"]
    speed = f"{rate:,.0f} env-steps/s" if rate > 0 else f"{info['seconds_per_update']:.2f} s/update"
    return "  ".join([speed, *(f"{k} {info[k]:.3f}" for k in SHOWN_METRICS if k in info)])


def run_command(args: argparse.Namespace, seeds: tuple[int, ...], grid: dict[str, Any]) -> int:
    console = Console(stderr=True, quiet=not is_main())  # the main process prints for all
    try:
        changes: dict[str, tuple[Any, Any]] = {}
        if args.resume:  # a run directory's own settings (a directory without a run is an error)
            config, changes = resumed_config(RunConfig.load(args.out), args, seeds, grid)
        else:
            config = config_from_args(args, seeds, grid)
        sinks = sink_options(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    if (
        not args.resume
    ):  # after the run's settings are checked (the agent's options are checked when it is built)
        make_run_directory(args.out)
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
            bar.update(task, completed=done, total=total, status=_status(info))

        try:
            result = train_run(
                config,
                args.out,
                resume=args.resume,
                previous_checkpoint=args.previous_checkpoint,
                changes=changes,
                log=console.print,
                on_chunk=on_chunk,
                sinks=sinks,
                model_shards=args.model_shards,
            )
        except (TrainingDiverged, RunLocked, DamagedCheckpoint, CheckpointNotWritten, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        except OSError as e:
            raise SystemExit(f"error: {_os_error(e)}") from None
    speed = (
        f"{result.env_steps_per_s:,.0f} env-steps/s"
        if result.env_steps_per_s > 0
        else f"{result.seconds_per_update:.2f} s/update"
    )
    console.print(
        f"{result.updates} updates; {speed} while training (compile {result.compile_s:.1f} s excluded)"
    )
    if result.evaluation is not None and is_main():
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
