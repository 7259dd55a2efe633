"""The interface every learner shares, so the learning algorithms do not care which they train.

An ``Agent`` maps a batch of observations to an ``AgentOutput``: a joint policy over every
decision of the TTI (``jaxmac.agents.policy.JointPolicy``: sample, mode, log_prob, entropy,
to_action, silence) and the team value. ``NoComm`` wraps any agent; ``LearnedPolicy`` makes a
trained one a ``jaxmac.protocols`` policy for ``jaxmac.evaluate``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
from flax import struct

from jaxmac.agents.policy import AgentOutput
from jaxmac.env import Action, EnvParams, EnvState, Observation, UDTSEnv

#: A learner's trainable parameters: a pytree of arrays (nested dicts of a Flax NNX state).
Params = Any


class Agent(Protocol):
    """A learner: ``init`` draws parameters, ``__call__`` is the batched policy and critic.

    Agents are frozen dataclasses compared by identity (they hold models and tables), so a
    compiled program that closes over one is reused for as long as the agent lives.
    """

    env: UDTSEnv

    def init(self, key: jax.Array) -> Params:
        """Initial parameters (jittable and vmappable over ``key``)."""
        ...

    def __call__(self, params: Params, obs: Observation) -> AgentOutput:
        """The policy for observations with one leading batch axis (E, ...); differentiable in
        ``params``."""
        ...

    def bounded(self, n_max: int) -> Agent:
        """This agent (the same parameters, the same decisions) for observations whose active
        UEs all sit in the first ``n_max`` slots, as a trainer's do (``EnvParams.n_max``): a
        language agent pads its BS prompts to n_max UEs, not ``env.max_ues``; others return
        themselves."""
        ...


def with_defaults(agent_class: type, options: dict[str, Any]) -> dict[str, Any]:
    """An agent's options: ``options`` over the defaults of ``agent_class``'s option fields (its
    positional fields after ``env``; the keyword-only ones are what its ``build`` makes). An
    unknown name is an error naming the allowed ones."""
    defaults = {
        f.name: f.default for f in dataclasses.fields(agent_class) if not f.kw_only and f.name != "env"
    }
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"{agent_class.__name__} options must be from {sorted(defaults)}, got {unknown}")
    return defaults | options


@dataclasses.dataclass(frozen=True, eq=False)
class NoComm:
    """No-Comm. (the paper's ablation): ``inner`` with every UCM and DCM forced to ``null``."""

    inner: Agent

    @property
    def env(self) -> UDTSEnv:
        return self.inner.env

    def init(self, key: jax.Array) -> Params:
        return self.inner.init(key)

    def bounded(self, n_max: int) -> NoComm:
        return NoComm(self.inner.bounded(n_max))

    def __call__(self, params: Params, obs: Observation) -> AgentOutput:
        out = self.inner(params, obs)
        return out.replace(policy=out.policy.silence())


@struct.dataclass
class LearnedPolicy:
    """A trained agent as a ``jaxmac.protocols`` policy, for ``jaxmac.evaluate``.

    It acts on a whole batch of episodes at once (``batched``), so the language actor can
    share one deduplicated forward pass among all the episodes of an evaluation chunk."""

    agent: Agent = struct.field(pytree_node=False)
    params: Params
    greedy: bool = struct.field(pytree_node=False, default=False)
    batched = True

    def __call__(
        self, key: jax.Array, obs: Observation, state: EnvState, params: EnvParams
    ) -> Action | tuple[Action, dict[str, jax.Array]]:
        """obs: a batch (E, ...); one key for the whole batch. A policy that counts its answers
        (LLM-PT's ``answer_counts``) returns them beside the action, for the evaluation's rows."""
        del state, params
        policy = self.agent(self.params, obs).policy
        sample = policy.mode() if self.greedy else policy.sample(key)
        action = policy.to_action(sample)
        counts = getattr(policy, "answer_counts", None)
        return action if counts is None else (action, counts(sample))
