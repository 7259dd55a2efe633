"""The Flax Flan-T5 and the LLM actor-critic (SPEC section 3)."""

from jaxmac.models.actor import (
    ActorOutput,
    Candidates,
    CandidateSet,
    LanguageActorCritic,
    act,
    act_distinct,
    choices_to_action,
    fuse,
    greedy,
    sample,
)
from jaxmac.models.config import CONFIGS, T5Config
from jaxmac.models.loading import load_pretrained_t5, load_t5, resolve_checkpoint
from jaxmac.models.t5 import T5

__all__ = [
    "CONFIGS",
    "ActorOutput",
    "CandidateSet",
    "Candidates",
    "LanguageActorCritic",
    "T5",
    "T5Config",
    "act",
    "act_distinct",
    "choices_to_action",
    "fuse",
    "greedy",
    "load_pretrained_t5",
    "load_t5",
    "resolve_checkpoint",
    "sample",
]
