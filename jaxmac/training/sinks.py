"""Optional metric sinks beside ``metrics.jsonl``/``metrics.csv``: TensorBoard and Weights &
Biases, fed the same rows (one per member and update) and the evaluation rows.

Neither library is a dependency of jaxmac (``pip install 'jaxmac[logging]'`` adds both); a sink
asked for without its library is an error naming the package before any work. Scalars are
logged at step ``update``; a sweep's member ``i`` logs under ``member_i/``; evaluations log
``eval/throughput_n{N}`` (and the row's other numbers) per UE count, a sweep member's under
``eval/seed_0_lr_0.001/``.
"""

from __future__ import annotations

import dataclasses
import importlib
import uuid
from pathlib import Path
from typing import Any, Protocol

from jaxmac.training.files import write_text_atomic

#: W&B modes ``--wandb`` takes: offline writes ``wandb/`` in the run directory (``wandb sync``
#: uploads it later), online needs network and a login.
WANDB_MODES = ("offline", "online")

#: Row entries that are labels or counters, not metrics.
_NOT_METRICS = frozenset({"update", "member", "seed"})


class MetricSink(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None:
        """The metric rows of a chunk (``update``, optional ``member``, numbers or None)."""

    def write_evaluation(self, update: int, rows: list[dict[str, Any]]) -> None:
        """The rows of an evaluation after ``update`` (``jaxmac.evaluate``'s)."""

    def close(self) -> None: ...


def _library(name: str, flag: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ValueError(
            f"{flag} needs the {name} package, which is not installed: pip install 'jaxmac[logging]'"
        ) from None


def _scalars(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    return {
        prefix + k: float(v)
        for k, v in row.items()
        if k not in _NOT_METRICS and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _member_prefix(row: dict[str, Any]) -> str:
    return f"member_{row['member']}/" if "member" in row else ""


def _evaluation_scalars(rows: list[dict[str, Any]]) -> dict[str, float]:
    """``eval/{metric}_n{N}`` for every number of every row; a sweep member's (its policy
    named ``run[seed=0,lr=0.001]``) as ``eval/seed_0_lr_0.001/{metric}_n{N}``."""
    out: dict[str, float] = {}
    for row in rows:
        policy = row.get("policy", "")
        member = policy[policy.index("[") + 1 : -1] if policy.endswith("]") else ""
        prefix = "eval/" + "".join(c if c.isalnum() or c in "._-" else "_" for c in member)
        for k, v in _scalars({k: v for k, v in row.items() if k != "n_ues"}).items():
            out[f"{prefix}{'/' if member else ''}{k}_n{row['n_ues']}"] = v
    return out


class TensorBoardSink:
    """Event files in ``directory`` (``tensorboard --logdir RUN/tensorboard``). On resume,
    ``purge_step`` makes TensorBoard drop the events a crash left past the checkpoint."""

    def __init__(self, directory: Path, purge_step: int | None = None) -> None:
        tensorboardx = _library("tensorboardX", "--tensorboard")
        self.writer = tensorboardx.SummaryWriter(logdir=str(directory), purge_step=purge_step)

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            for k, v in _scalars(row, _member_prefix(row)).items():
                self.writer.add_scalar(k, v, global_step=row["update"])
        self.writer.flush()

    def write_evaluation(self, update: int, rows: list[dict[str, Any]]) -> None:
        for k, v in _evaluation_scalars(rows).items():
            self.writer.add_scalar(k, v, global_step=update)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def wandb_id(directory: Path) -> str:
    """The W&B run id of the run in ``directory``: drawn at random on first use and kept in
    ``directory/wandb_id``, so a resume continues the same W&B run and two run directories of
    the same name (``runs/a/seed0``, ``runs/b/seed0``) never share one."""
    path = directory / "wandb_id"
    if not path.is_file():
        write_text_atomic(path, uuid.uuid4().hex[:16])
    return path.read_text().strip()


class WandbSink:
    """A W&B run in ``directory`` (``mode`` from ``WANDB_MODES``) named after it, its config the
    run's ``config.json``, resumed by its id (``wandb_id``) on ``--resume``."""

    def __init__(self, directory: Path, mode: str, project: str, name: str, config: dict[str, Any]) -> None:
        if mode not in WANDB_MODES:
            raise ValueError(f"--wandb must be one of {list(WANDB_MODES)}, got {mode!r}")
        wandb = _library("wandb", "--wandb")
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            name=name,
            dir=str(directory),
            mode=mode,
            config=config,
            resume="allow",
            id=wandb_id(directory),
            settings=wandb.Settings(silent=True, console="off"),
        )

    def write(self, rows: list[dict[str, Any]]) -> None:
        by_update: dict[int, dict[str, float]] = {}
        for row in rows:
            by_update.setdefault(row["update"], {}).update(_scalars(row, _member_prefix(row)))
        for update, scalars in sorted(by_update.items()):
            self.run.log(scalars, step=update)

    def write_evaluation(self, update: int, rows: list[dict[str, Any]]) -> None:
        self.run.log(_evaluation_scalars(rows), step=update)

    def close(self) -> None:
        self.run.finish()


@dataclasses.dataclass(frozen=True)
class SinkOptions:
    """Which sinks a run writes to (host I/O choices, not part of the run's configuration:
    a resume may add or drop them)."""

    tensorboard: bool = False  # event files in RUN/tensorboard
    wandb: str | None = None  # a mode of WANDB_MODES: a W&B run in RUN/wandb
    wandb_project: str = "jaxmac"

    def check(self) -> None:
        """Fail (naming the flag and the package) when a chosen sink's library is missing."""
        if self.tensorboard:
            _library("tensorboardX", "--tensorboard")
        if self.wandb is not None:
            if self.wandb not in WANDB_MODES:
                raise ValueError(f"--wandb must be one of {list(WANDB_MODES)}, got {self.wandb!r}")
            _library("wandb", "--wandb")

    def open(self, directory: Path, config: dict[str, Any], first_update: int) -> list[MetricSink]:
        """The chosen sinks of the run in ``directory``, continuing after ``first_update``."""
        sinks: list[MetricSink] = []
        if self.tensorboard:
            sinks.append(TensorBoardSink(directory / "tensorboard", purge_step=first_update + 1))
        if self.wandb is not None:
            sinks.append(WandbSink(directory, self.wandb, self.wandb_project, directory.name, config))
        return sinks
