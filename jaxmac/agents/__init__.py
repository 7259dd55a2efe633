"""Learners behind one interface (``Agent``): LLM4MAC's language actor-critic, Sym. MAPPO,
Sym. MADDPG's actors, and No-Comm. (either one with its messages forced to ``null``)."""

from __future__ import annotations

from jaxmac.agents.base import Agent, LearnedPolicy, NoComm, Params
from jaxmac.agents.llm import LLMAgent
from jaxmac.agents.maddpg import MADDPGAgent
from jaxmac.agents.mappo import MAPPOAgent
from jaxmac.agents.policy import AgentOutput, CandidatePolicy, Choices, JointPolicy, OneHots, fuse

__all__ = [
    "Agent",
    "AgentOutput",
    "CandidatePolicy",
    "Choices",
    "JointPolicy",
    "LLMAgent",
    "LearnedPolicy",
    "MADDPGAgent",
    "MAPPOAgent",
    "NoComm",
    "OneHots",
    "Params",
    "fuse",
]
