"""Learners behind one interface (``Agent``): LLM4MAC's language actor-critic, Sym. MAPPO,
and No-Comm. (either one with its messages forced to ``null``)."""

from __future__ import annotations

import dataclasses

import jax

from jaxmac.agents.base import (
    Agent,
    Choices,
    LearnedPolicy,
    Params,
    PolicyOutput,
    choose,
    joint_entropy,
    joint_log_prob,
    silence,
    to_action,
)
from jaxmac.agents.llm import LLMAgent
from jaxmac.agents.mappo import MAPPOAgent
from jaxmac.env import Observation, UDTSEnv

ALGOS = ("llm4mac", "mappo")


@dataclasses.dataclass(frozen=True, eq=False)
class NoComm:
    """No-Comm. (SPEC 4): ``inner`` with every UCM and DCM forced to ``null`` (see ``silence``)."""

    inner: Agent

    @property
    def env(self) -> UDTSEnv:
        return self.inner.env

    def init(self, key: jax.Array) -> Params:
        return self.inner.init(key)

    def __call__(self, params: Params, obs: Observation) -> PolicyOutput:
        return silence(self.inner(params, obs))


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
    "Choices",
    "LLMAgent",
    "LearnedPolicy",
    "MAPPOAgent",
    "NoComm",
    "Params",
    "PolicyOutput",
    "choose",
    "joint_entropy",
    "joint_log_prob",
    "make_agent",
    "silence",
    "to_action",
]
