"""Slotted ALOHA with acknowledgements: a reference the paper lacks (docs/SPEC.md §4)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxmac.env import Action, EnvParams, EnvState, Observation
from jaxmac.env.spaces import ACKNOWLEDGE, DCM_NULL, DELETE, NOTHING, SUCCESS, TRANSMIT


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Aloha:
    """A backlogged UE transmits its HOL SDU with probability ``q``; the BS acknowledges each
    decoded SDU; the UE deletes on ``acknowledge``. After transmitting, a UE waits one TTI for
    the ack (it arrives in the observation two TTIs after the transmission) before trying
    again. No uplink signalling.

    ``q=None`` uses 1/n for n active UEs (every agent is told n, as in the SIE prompt), the
    throughput-optimal choice for saturated slotted ALOHA.
    """

    q: float | None = None

    def __post_init__(self) -> None:
        if self.q is not None and not 0.0 < self.q <= 1.0:
            raise ValueError(f"aloha q must be in (0, 1] or None (1/n), got {self.q}")

    def __call__(self, key: jax.Array, obs: Observation, state: EnvState, params: EnvParams) -> Action:
        del state, params
        slots = jnp.arange(obs.active.shape[0])
        buffer, last_action = obs.ue.buffer[:, 0], obs.ue.action[:, 0]
        acked = obs.ue.dcm[:, 0] == ACKNOWLEDGE
        n = jnp.maximum(jnp.sum(obs.active), 1)
        q = 1.0 / n if self.q is None else self.q
        coin = jax.random.uniform(key, slots.shape) < q
        waiting_for_ack = (last_action == TRANSMIT) & ~acked
        ue = jnp.where(acked & (buffer > 0), DELETE, NOTHING)
        ue = jnp.where(~acked & ~waiting_for_ack & (buffer > 0) & coin, TRANSMIT, ue)
        ack = (obs.bs.channel[0] == SUCCESS) & (slots == obs.bs.sender[0])
        dcm = jnp.where(ack, ACKNOWLEDGE, DCM_NULL)
        return Action(
            ue=ue.astype(jnp.int32), ucm=jnp.zeros_like(slots, jnp.int32), dcm=dcm.astype(jnp.int32)
        )
