"""jaxmac: LLM4MAC in JAX. The UDTS environment, scripted protocols and evaluation."""

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
    "evaluate",
    "make_protocol",
]
