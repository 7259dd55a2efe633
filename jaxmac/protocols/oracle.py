"""Genie-aided scheduler: the practical throughput upper bound (docs/SPEC.md §4)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxmac.env import Action, EnvParams, EnvState, Observation
from jaxmac.env.spaces import DELETE, NOTHING, TRANSMIT


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Oracle:
    """Reads the true state (not a protocol any agent could run). Each TTI, the UE with the
    longest queue among those whose HOL SDU the BS has not received transmits it (ties to
    the lowest slot); every UE whose HOL SDU the BS already has deletes it. Messages are
    ``null``. No collisions, no idle TTI while there is undelivered data, and a lone UE
    alternates transmit/delete, so it peaks at 1/2 SDU/TTI."""

    def __call__(self, key: jax.Array, obs: Observation, state: EnvState, params: EnvParams) -> Action:
        del key, obs, params
        holding = state.active & (state.queue > 0)
        undelivered = holding & ~state.hol_delivered
        longest = jnp.argmax(jnp.where(undelivered, state.queue, -1))
        transmit = undelivered & (jnp.arange(state.queue.shape[0]) == longest)
        ue = jnp.where(holding & state.hol_delivered, DELETE, jnp.where(transmit, TRANSMIT, NOTHING))
        zeros = jnp.zeros_like(state.queue)
        return Action(ue=ue.astype(jnp.int32), ucm=zeros, dcm=zeros)
