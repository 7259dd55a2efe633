"""The Flax Flan-T5 and the LLM actor-critic; nothing here knows the environment or the prompts."""

from jaxmac.models.actor import (
    ActorOutput,
    Candidates,
    CandidateSet,
    CandidateTrie,
    LanguageActorCritic,
    TargetedCandidates,
    act,
    act_distinct,
)
from jaxmac.models.config import CONFIGS, DTYPES, T5Config, compute_dtype
from jaxmac.models.export import save_t5, t5_tensors
from jaxmac.models.loading import load_pretrained_t5, load_t5, resolve_checkpoint, tiny_config
from jaxmac.models.t5 import T5

__all__ = [
    "CONFIGS",
    "DTYPES",
    "compute_dtype",
    "ActorOutput",
    "CandidateSet",
    "Candidates",
    "CandidateTrie",
    "LanguageActorCritic",
    "T5",
    "T5Config",
    "TargetedCandidates",
    "act",
    "act_distinct",
    "load_pretrained_t5",
    "load_t5",
    "resolve_checkpoint",
    "save_t5",
    "t5_tensors",
    "tiny_config",
]
