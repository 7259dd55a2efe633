"""Training runs: the registry of methods, configuration, the host loop, checkpoints."""

from jaxmac.training.checkpoint import CheckpointNotWritten, Checkpoints, DamagedCheckpoint
from jaxmac.training.config import DEFAULT_STOP_IF, SWEEPABLE, RunConfig
from jaxmac.training.files import RunLock, RunLocked, write_json_atomic
from jaxmac.training.loop import (
    Programs,
    Run,
    RunResult,
    TrainingDiverged,
    over_members,
    shared_programs,
    train_run,
)
from jaxmac.training.methods import METHODS, Method, make_agent, method

__all__ = [
    "DEFAULT_STOP_IF",
    "METHODS",
    "SWEEPABLE",
    "Checkpoints",
    "CheckpointNotWritten",
    "DamagedCheckpoint",
    "Method",
    "Programs",
    "Run",
    "RunConfig",
    "RunLock",
    "RunLocked",
    "RunResult",
    "TrainingDiverged",
    "make_agent",
    "method",
    "over_members",
    "shared_programs",
    "train_run",
    "write_json_atomic",
]
