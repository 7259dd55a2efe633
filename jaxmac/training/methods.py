"""The paper's learned methods by name: each a policy (agent) paired with the algorithm that
trains it. Adding a method is one line here; the host loop, ``RunConfig`` and the CLI read the
registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jax.sharding import Mesh

from jaxmac.agents import Agent, LLMAgent, LLMPTAgent, MADDPGAgent, MAPPOAgent, NoComm
from jaxmac.agents.llm import LanguageAgent
from jaxmac.algorithms import (
    HPARAM_RANGES,
    MADDPG,
    MADDPG_RANGES,
    SUPERVISED_RANGES,
    Algorithm,
    HParams,
    LanguagePPOConfig,
    MADDPGConfig,
    MADDPGHParams,
    PPOConfig,
    Supervised,
    SupervisedConfig,
    SupervisedHParams,
    Trainer,
)
from jaxmac.env import UDTSEnv
from jaxmac.settings import declared_settings


@dataclasses.dataclass(frozen=True)
class Method:
    """A learned method: how to build its agent and its algorithm, and the algorithm's settings.

    Attributes:
      agent: the agent's class; ``agent.build(env, **options) -> Agent`` (the options are the
        run's ``agent`` dict).
      algorithm: ``algorithm(agent, config, mesh) -> Algorithm``.
      config: the algorithm's static settings (a dataclass built from the run's ``algorithm``
        dict; it has ``updates``, the run's length).
      hparams: the algorithm's traced hyperparameters (a dataclass with an ``env`` field).
      hparam_ranges: allowed ranges of the ``hparams`` scalars (what a sweep may vary).
      eval_episodes: default evaluation episodes per UE count of a run of this method.
      greedy: whether its runs evaluate the most likely decisions by default: the language
        methods do (the paper's test setting), because greedy decisions keep an evaluation's
        prompts few and distinct-prompt inference cheap (``jaxmac eval --checkpoint`` of an untrained
        tiny LLM4MAC run at 1-8 UEs x 100 episodes here: 24 s greedy against 95 s sampled).
    """

    agent: type
    algorithm: Callable[[Agent, Any, Mesh], Algorithm]
    config: type
    hparams: type
    hparam_ranges: dict[str, tuple[float, float, bool]]
    eval_episodes: int = 500
    greedy: bool = False

    @property
    def language(self) -> bool:
        """Its agent reads prompts (a ``LanguageAgent``): ``jaxmac train`` bounds them to the run's
        UEs (``RunConfig.prompt_ues``)."""
        return issubclass(self.agent, LanguageAgent)

    def settings(self) -> dict[str, list[dataclasses.Field]]:
        """The settings a user may give, by the ``RunConfig`` dict they go to: the agent's
        options, the algorithm's settings and the hyperparameters (fields declared with
        ``jaxmac.settings.setting``; the command line is built from them)."""
        return {
            "agent": declared_settings(self.agent),
            "algorithm": declared_settings(self.config),
            "hparams": [f for f in declared_settings(self.hparams) if f.name in self.hparam_ranges],
        }


METHODS: dict[str, Method] = {
    "llm4mac": Method(
        LLMAgent, Trainer, LanguagePPOConfig, HParams, HPARAM_RANGES, eval_episodes=64, greedy=True
    ),
    "mappo": Method(MAPPOAgent, Trainer, PPOConfig, HParams, HPARAM_RANGES),
    "maddpg": Method(MADDPGAgent, MADDPG, MADDPGConfig, MADDPGHParams, MADDPG_RANGES),
    "llm-pt": Method(
        LLMPTAgent,
        Supervised,
        SupervisedConfig,
        SupervisedHParams,
        SUPERVISED_RANGES,
        eval_episodes=100,
        greedy=True,
    ),
}


def method(algo: str) -> Method:
    """The registered method ``algo``; an error naming the allowed ones otherwise."""
    if algo not in METHODS:
        raise ValueError(f"algo must be one of {list(METHODS)}, got {algo!r}")
    return METHODS[algo]


def make_agent(algo: str, env: UDTSEnv, *, no_comm: bool = False, **options: object) -> Agent:
    """The agent of method ``algo`` (its options: e.g. ``LLMAgent.build``'s model, pretrained,
    sie, ...; ``MAPPOAgent.build``'s hidden), wrapped in ``NoComm`` if ``no_comm``."""
    agent = method(algo).agent.build(env, **options)
    return NoComm(agent) if no_comm else agent
