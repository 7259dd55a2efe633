"""Command-line options shared by the subcommands: the environment, UE-count ranges and the
``--out`` checks."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jaxmac.env import REWARD_PRESETS, EnvParams, UDTSEnv
from jaxmac.training.sinks import WANDB_MODES, SinkOptions

#: The largest count ``parse_ues`` takes (far above any ``max_ues`` a run can afford).
MAX_COUNT = 4096


def parse_ues(text: str) -> list[int]:
    """``"1-8"`` -> [1, ..., 8]; ``"2,4,8"`` -> [2, 4, 8]; ``"3"`` -> [3]; a count given twice
    counts once (``"2,2"`` -> [2])."""
    counts: list[int] = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.partition("-")
            lo_n, hi_n = int(lo), int(hi if dash else lo)
            if lo_n > hi_n:
                raise ValueError
            if hi_n > MAX_COUNT:
                raise argparse.ArgumentTypeError(f"UE counts must be <= {MAX_COUNT}, got {text!r}")
            counts.extend(range(lo_n, hi_n + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count, a range LO-HI or a comma list like 1-4,8; got {text!r}"
        ) from None
    return list(dict.fromkeys(counts))


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """How this process joins a multi-process run (``jaxmac.distributed``; every process runs
    the same command)."""
    group = parser.add_argument_group(
        "devices and processes (a multi-process run: every process runs the same command; "
        "README, 'Several hosts')"
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join a JAX cluster detected from the environment (TPU pod, SLURM, Open MPI)",
    )
    group.add_argument(
        "--coordinator", default=None, help="HOST:PORT of process 0 (else $JAX_COORDINATOR_ADDRESS)"
    )
    group.add_argument(
        "--num-processes", type=int, default=None, help="processes in the run (else $JAX_NUM_PROCESSES)"
    )
    group.add_argument(
        "--process-id", type=int, default=None, help="this process, 0..N-1 (else $JAX_PROCESS_ID)"
    )
    group.add_argument(
        "--model-shards",
        type=int,
        default=1,
        help="split the model's weights over this many devices (tensor parallel; it must divide "
        "the devices of all processes; the episodes are split over the rest)",
    )


#: Options of a process's place in a multi-process run (``add_cluster_options``).
CLUSTER_OPTIONS = ("distributed", "coordinator", "num_processes", "process_id")
#: Those and the device layout: how a run is spread, which its results do not depend on.
DEVICE_OPTIONS = (*CLUSTER_OPTIONS, "model_shards")

#: The logging-sink options of train and sweep (``add_sink_options``).
SINK_OPTIONS = ("tensorboard", "wandb", "wandb_project")


def add_sink_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging beside metrics.jsonl/csv (pip install 'jaxmac[logging]')")
    group.add_argument(
        "--tensorboard", action="store_true", help="also write TensorBoard event files to OUT/tensorboard"
    )
    group.add_argument(
        "--wandb",
        choices=WANDB_MODES,
        default=None,
        help="also log to Weights & Biases: offline writes OUT/wandb (upload later with wandb sync)",
    )
    group.add_argument("--wandb-project", default="jaxmac", help="the W&B project (default jaxmac)")


def sink_options(args: argparse.Namespace) -> SinkOptions:
    """The sinks the options choose, their libraries checked (an error naming the package)."""
    options = SinkOptions(args.tensorboard, args.wandb, args.wandb_project)
    options.check()
    return options


#: Options that fix the environment's shapes (a trained run's cannot change).
SHAPE_OPTIONS = ("max_ues", "buffer_size", "episode_len", "history", "ucm_vocab", "dcm_vocab")
#: Options that set ``EnvParams`` values (``reward`` a preset of its weights).
PARAM_OPTIONS = ("p_arrival", "tbler", "churn", "reward")


def add_env_options(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """The environment's options; ``defaults=False`` leaves every default None, so a command can
    tell which were given (``env_from_options`` fills in the defaults)."""
    env = UDTSEnv()
    params = EnvParams()

    def default(value: object) -> object:
        return value if defaults else None

    group = parser.add_argument_group("environment (docs/SPEC.md §1.1)")
    group.add_argument("--max-ues", type=int, default=default(env.max_ues), help="padded UE dimension")
    group.add_argument("--buffer-size", type=int, default=default(env.buffer_size), help="FIFO capacity B")
    group.add_argument("--episode-len", type=int, default=default(env.episode_len), help="TTIs per episode T")
    group.add_argument("--history", type=int, default=default(env.history), help="past TTIs observed k")
    group.add_argument("--ucm-vocab", type=int, default=default(env.ucm_vocab))
    group.add_argument("--dcm-vocab", type=int, default=default(env.dcm_vocab))
    group.add_argument("--p-arrival", type=float, default=default(float(params.p_arrival)))
    group.add_argument("--tbler", type=float, default=default(float(params.tbler)))
    group.add_argument("--churn", type=float, default=default(float(params.churn)))
    group.add_argument(
        "--reward", choices=sorted(REWARD_PRESETS), default=default("llm4mac"), help="reward preset (llm4mac)"
    )


def given_params(args: argparse.Namespace) -> dict[str, object]:
    """The ``EnvParams`` values the options set (the given ones, when parsed without defaults)."""
    values = {k: getattr(args, k) for k in PARAM_OPTIONS[:-1] if getattr(args, k) is not None}
    return values | (REWARD_PRESETS[args.reward] if args.reward is not None else {})


def env_from_options(args: argparse.Namespace) -> tuple[UDTSEnv, EnvParams]:
    """The environment and its parameters from the options (defaults for those not given)."""
    env = UDTSEnv(**{k: getattr(args, k) for k in SHAPE_OPTIONS if getattr(args, k) is not None})
    return env, env.default_params.replace(**given_params(args))


def make_directory(out: Path, directory: Path) -> None:
    """Create ``directory`` (``out``, or the folder ``out`` goes in) if missing, or fail in one
    line naming ``--out``: a file on the way, a place that cannot be created or written."""
    ancestor = next(p for p in (directory, *directory.parents) if p.exists())
    if not ancestor.is_dir():
        raise SystemExit(
            f"error: --out {out}: cannot create {directory} ({ancestor} is a file, not a directory)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"error: --out {out}: cannot create {directory} ({e.strerror})") from None
    if not os.access(directory, os.W_OK):
        raise SystemExit(f"error: --out {out}: {directory} is not writable")
