"""Learning algorithms behind one seam (``Algorithm``): PPO (LLM4MAC, Sym. MAPPO), MADDPG and
supervised fine-tuning on the Baseline's answers (LLM-PT), each one compiled loop."""

from jaxmac.algorithms.base import EPISODE_AXIS, Algorithm, episode_devices, optimizer
from jaxmac.algorithms.demonstrations import Demonstrations, Examples, record_demonstrations
from jaxmac.algorithms.maddpg import MADDPG, MADDPG_RANGES, MADDPGConfig, MADDPGHParams, MADDPGState
from jaxmac.algorithms.ppo import (
    HPARAM_RANGES,
    UPDATE_METRICS,
    Batch,
    HParams,
    LanguagePPOConfig,
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
from jaxmac.algorithms.supervised import (
    SUPERVISED_METRICS,
    SUPERVISED_RANGES,
    Supervised,
    SupervisedConfig,
    SupervisedHParams,
    SupervisedState,
)

__all__ = [
    "EPISODE_AXIS",
    "episode_devices",
    "HPARAM_RANGES",
    "Algorithm",
    "Batch",
    "Demonstrations",
    "Examples",
    "HParams",
    "MADDPG",
    "MADDPGConfig",
    "MADDPGHParams",
    "MADDPGState",
    "MADDPG_RANGES",
    "UPDATE_METRICS",
    "LanguagePPOConfig",
    "PPOConfig",
    "RunnerState",
    "SUPERVISED_METRICS",
    "SUPERVISED_RANGES",
    "Supervised",
    "SupervisedConfig",
    "SupervisedHParams",
    "SupervisedState",
    "Trainer",
    "Transition",
    "gae",
    "make_train",
    "normalize",
    "optimizer",
    "ppo_objective",
    "record_demonstrations",
    "training_batch",
]
