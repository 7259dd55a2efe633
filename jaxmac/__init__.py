"""jaxmac: LLM4MAC in JAX. The UDTS environment, scripted protocols and evaluation."""

import os

# XLA's C++ log goes to the terminal; reloading a cached CPU program logs machine-feature
# notices at ERROR level on every load. Quiet it unless the user chose a level (set before jax loads).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from jaxmac.compilation import enable_compilation_cache  # noqa: E402
from jaxmac.env import REWARD_PRESETS, Action, EnvParams, EnvState, Observation, UDTSEnv
from jaxmac.evaluation import EvaluationTable, evaluate
from jaxmac.protocols import make_protocol

__all__ = [
    "REWARD_PRESETS",
    "Action",
    "EnvParams",
    "EnvState",
    "EvaluationTable",
    "Observation",
    "UDTSEnv",
    "enable_compilation_cache",
    "evaluate",
    "make_protocol",
]
