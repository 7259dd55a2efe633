"""Learning algorithms: PPO for every learner in one compiled loop."""

from jaxmac.algorithms.ppo import (
    Batch,
    HParams,
    PPOConfig,
    RunnerState,
    Trainer,
    Transition,
    gae,
    make_train,
    normalize,
    optimizer,
    ppo_objective,
)

__all__ = [
    "Batch",
    "HParams",
    "PPOConfig",
    "RunnerState",
    "Trainer",
    "Transition",
    "gae",
    "make_train",
    "normalize",
    "optimizer",
    "ppo_objective",
]
