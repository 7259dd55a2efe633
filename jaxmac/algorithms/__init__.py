"""Learning algorithms behind one seam (``Algorithm``): PPO (LLM4MAC, Sym. MAPPO) and MADDPG,
each one compiled loop."""

from jaxmac.algorithms.base import EPISODE_AXIS, Algorithm, optimizer
from jaxmac.algorithms.maddpg import MADDPG, MADDPG_RANGES, MADDPGConfig, MADDPGHParams, MADDPGState
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
    ppo_objective,
    training_batch,
)

__all__ = [
    "EPISODE_AXIS",
    "HPARAM_RANGES",
    "Algorithm",
    "Batch",
    "HParams",
    "MADDPG",
    "MADDPGConfig",
    "MADDPGHParams",
    "MADDPGState",
    "MADDPG_RANGES",
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
