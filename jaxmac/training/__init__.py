"""Training runs: configuration, the host loop, checkpoints."""

from jaxmac.training.checkpoint import Checkpoints
from jaxmac.training.config import SWEEPABLE, RunConfig
from jaxmac.training.files import write_json_atomic
from jaxmac.training.loop import Run, RunResult, TrainingDiverged, train_run

__all__ = [
    "SWEEPABLE",
    "Checkpoints",
    "Run",
    "RunConfig",
    "RunResult",
    "TrainingDiverged",
    "train_run",
    "write_json_atomic",
]
