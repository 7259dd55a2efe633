"""The UDTS environment (docs/SPEC.md §1)."""

from jaxmac.env.params import REWARD_PRESETS, EnvParams
from jaxmac.env.types import (
    Action,
    BSObservation,
    EnvState,
    EpisodeTotals,
    Observation,
    ResetDraws,
    StepDraws,
    StepInfo,
    TTICounters,
    UEObservation,
)
from jaxmac.env.udts import UDTSEnv

__all__ = [
    "REWARD_PRESETS",
    "Action",
    "BSObservation",
    "EnvParams",
    "EnvState",
    "EpisodeTotals",
    "Observation",
    "ResetDraws",
    "StepDraws",
    "StepInfo",
    "TTICounters",
    "UDTSEnv",
    "UEObservation",
]
