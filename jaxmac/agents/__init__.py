"""Learners behind one interface (``Agent``): LLM4MAC's language actor-critic, LLM-PT's
generating T5, Sym. MAPPO, Sym. MADDPG's actors, and No-Comm. (any of the ones reinforcement
learning trains with its messages forced to ``null``)."""

from __future__ import annotations

from jaxmac.agents.base import Agent, LearnedPolicy, NoComm, Params
from jaxmac.agents.llm import LanguageAgent, LLMAgent
from jaxmac.agents.llm_pt import AnswerPolicy, Answers, LLMPTAgent, parse_answers
from jaxmac.agents.maddpg import MADDPGAgent
from jaxmac.agents.mappo import MAPPOAgent
from jaxmac.agents.policy import (
    ActingPolicy,
    AgentOutput,
    CandidatePolicy,
    Choices,
    JointPolicy,
    OneHots,
    fuse,
)

__all__ = [
    "ActingPolicy",
    "Agent",
    "AnswerPolicy",
    "Answers",
    "AgentOutput",
    "CandidatePolicy",
    "Choices",
    "JointPolicy",
    "LLMAgent",
    "LanguageAgent",
    "LLMPTAgent",
    "LearnedPolicy",
    "MADDPGAgent",
    "MAPPOAgent",
    "NoComm",
    "OneHots",
    "Params",
    "fuse",
    "parse_answers",
]
