"""The interface every learner shares, so the PPO loop does not care which it trains.

An ``Agent`` maps a batch of observations to one ``PolicyOutput``: a categorical policy per
decision (each UE's joint buffer action and UCM, and the BS's DCM to each UE) and the team
value. The helpers here turn that into what PPO needs: sampled choices, the fused joint
log-probability and entropy (paper Eq. 11), and an ``Action`` for the environment.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from jaxmac.env import Action, EnvParams, EnvState, Observation, UDTSEnv
from jaxmac.models.actor import choices_to_action, fuse

#: A learner's trainable parameters: a pytree of arrays (nested dicts of a Flax NNX state).
Params = Any


@struct.dataclass
class PolicyOutput:
    """The policy of every decision of a batch of TTIs (leading axes ``...``)."""

    ue_log_probs: jax.Array  # (..., M, 3 * ucm_vocab) log pi of UE candidate "{action} {ucm}"
    bs_log_probs: jax.Array  # (..., M, dcm_vocab) log pi of the BS's DCM to each UE slot
    value: jax.Array  # (...,) team value (a centralised critic, or Eq. 11's fused values)


@struct.dataclass
class Choices:
    """Chosen candidate indices of every decision."""

    ue: jax.Array  # (..., M) int32 in [0, 3 * ucm_vocab)
    bs: jax.Array  # (..., M) int32 in [0, dcm_vocab)


class Agent(Protocol):
    """A learner: ``init`` draws parameters, ``__call__`` is the batched policy and critic.

    Agents are frozen dataclasses compared by identity (they hold models and tables), so a
    compiled program that closes over one is reused for as long as the agent lives.
    """

    env: UDTSEnv

    def init(self, key: jax.Array) -> Params:
        """Initial parameters (jittable and vmappable over ``key``)."""
        ...

    def __call__(self, params: Params, obs: Observation) -> PolicyOutput:
        """The policy for observations with one leading batch axis (E, ...); differentiable in
        ``params``."""
        ...


def silence(out: PolicyOutput) -> PolicyOutput:
    """No-Comm.: restrict every decision to candidates whose message is ``null`` (index 0).

    UE candidate c carries UCM ``c % ucm_vocab``; the BS's only remaining candidate is
    ``null``, so its decisions become deterministic (log-probability 0, entropy 0)."""
    ucm_vocab = out.ue_log_probs.shape[-1] // 3
    ue_allowed = jnp.arange(out.ue_log_probs.shape[-1]) % ucm_vocab == 0
    bs_allowed = jnp.arange(out.bs_log_probs.shape[-1]) == 0

    def restrict(log_probs: jax.Array, allowed: jax.Array) -> jax.Array:
        return jax.nn.log_softmax(jnp.where(allowed, log_probs, -jnp.inf), axis=-1)

    return out.replace(
        ue_log_probs=restrict(out.ue_log_probs, ue_allowed),
        bs_log_probs=restrict(out.bs_log_probs, bs_allowed),
    )


def choose(key: jax.Array, out: PolicyOutput, greedy: bool = False) -> Choices:
    """Sample (or, ``greedy``, take the most likely) candidate of every decision."""
    if greedy:
        return Choices(ue=jnp.argmax(out.ue_log_probs, -1), bs=jnp.argmax(out.bs_log_probs, -1))
    ue_key, bs_key = jax.random.split(key)
    return Choices(
        ue=jax.random.categorical(ue_key, out.ue_log_probs, axis=-1),
        bs=jax.random.categorical(bs_key, out.bs_log_probs, axis=-1),
    )


def _entropy(log_probs: jax.Array) -> jax.Array:
    """Entropy of categoricals (..., C) whose masked candidates have log-probability -inf
    (the inner ``where`` keeps their gradient finite)."""
    possible = log_probs > -jnp.inf
    safe = jnp.where(possible, log_probs, 0.0)
    return -jnp.sum(jnp.where(possible, jnp.exp(safe) * safe, 0.0), axis=-1)


def joint_log_prob(out: PolicyOutput, choices: Choices, active: jax.Array) -> jax.Array:
    """Eq. 11: the mean over active agents' 2n decisions of the chosen candidates'
    log-probabilities (consensus factors 1). ``active`` (..., M) -> (...)."""
    ue = jnp.take_along_axis(out.ue_log_probs, choices.ue[..., None], axis=-1)[..., 0]
    bs = jnp.take_along_axis(out.bs_log_probs, choices.bs[..., None], axis=-1)[..., 0]
    return fuse(jnp.concatenate([ue, bs], axis=-1), active)


def joint_entropy(out: PolicyOutput, active: jax.Array) -> jax.Array:
    """The same weighted mean of the per-decision entropies, (...)."""
    return fuse(jnp.concatenate([_entropy(out.ue_log_probs), _entropy(out.bs_log_probs)], -1), active)


def to_action(choices: Choices, env: UDTSEnv) -> Action:
    return choices_to_action(choices.ue, choices.bs, env.ucm_vocab)


@struct.dataclass
class LearnedPolicy:
    """A trained agent as a ``jaxmac.protocols`` policy, for ``jaxmac.evaluate``.

    It acts on a whole batch of episodes at once (``batched``), so the language actor can
    share one deduplicated forward pass among all the episodes of an evaluation chunk."""

    agent: Agent = struct.field(pytree_node=False)
    params: Params
    greedy: bool = struct.field(pytree_node=False, default=False)
    batched = True

    def __call__(self, key: jax.Array, obs: Observation, state: EnvState, params: EnvParams) -> Action:
        """obs: a batch (E, ...); one key for the whole batch."""
        del state, params
        out = self.agent(self.params, obs)
        return to_action(choose(key, out, self.greedy), self.agent.env)
