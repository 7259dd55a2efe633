"""Learners behind one interface (``Agent``): LLM4MAC's language actor-critic, Sym. MAPPO,
and No-Comm. (either one with its messages forced to ``null``)."""

from __future__ import annotations

from jaxmac.agents.base import Agent, LearnedPolicy, NoComm, Params
from jaxmac.agents.llm import LLMAgent
from jaxmac.agents.mappo import MAPPOAgent
from jaxmac.agents.policy import AgentOutput, CandidatePolicy, Choices, JointPolicy, fuse
from jaxmac.env import UDTSEnv

ALGOS = ("llm4mac", "mappo")


def make_agent(algo: str, env: UDTSEnv, *, no_comm: bool = False, **options: object) -> Agent:
    """``llm4mac`` (options of ``LLMAgent``: model, pretrained, sie, ...) or ``mappo``
    (options of ``MAPPOAgent``: hidden), wrapped in ``NoComm`` if ``no_comm``."""
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {list(ALGOS)}, got {algo!r}")
    agent: Agent = LLMAgent(env, **options) if algo == "llm4mac" else MAPPOAgent(env, **options)
    return NoComm(agent) if no_comm else agent


__all__ = [
    "ALGOS",
    "Agent",
    "AgentOutput",
    "CandidatePolicy",
    "Choices",
    "JointPolicy",
    "LLMAgent",
    "LearnedPolicy",
    "MAPPOAgent",
    "NoComm",
    "Params",
    "fuse",
    "make_agent",
]
