"""Learning algorithms: PPO for every learner in one compiled loop."""

from jaxmac.algorithms.ppo import (
    HPARAM_RANGES,
    UPDATE_METRICS,
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
    training_batch,
)

__all__ = [
    "HPARAM_RANGES",
    "Batch",
    "HParams",
    "UPDATE_METRICS",
    "PPOConfig",
    "RunnerState",
    "Trainer",
    "Transition",
    "gae",
    "make_train",
    "normalize",
    "optimizer",
    "ppo_objective",
    "training_batch",
]
