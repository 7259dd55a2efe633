"""The paper's human-crafted Baseline: grant-based, contention-free access (docs/SPEC.md §4)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxmac.env import Action, EnvParams, EnvState, Observation
from jaxmac.env.spaces import (
    ACKNOWLEDGE,
    DCM_NULL,
    DELETE,
    NOTHING,
    SCHEDULE_GRANT,
    SCHEDULE_REQUEST,
    SUCCESS,
    TRANSMIT,
    UCM_NULL,
)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class ContentionFree:
    """Schedule request, round-robin grant, transmit, acknowledge, delete.

    Decides from the latest TTI of ``obs`` only (works for any history length):

    * UE: on ``acknowledge`` delete the HOL SDU; on ``schedule_grant`` transmit it; send
      ``schedule_request`` while it holds an SDU that is neither being transmitted now nor
      awaiting its acknowledgement (it transmitted last TTI and no ack has come yet).
    * BS: ``acknowledge`` the sender of a decoded SDU; ``schedule_grant`` one requesting UE per
      TTI, round-robin: the first requester after the UE granted last TTI (never that one
      again, since it is transmitting now and its request is stale).

    One SDU takes 3 TTIs per UE (transmit, request, grant), so a lone UE peaks at 1/3 SDU/TTI
    and three or more backlogged UEs can keep the channel busy without collisions.
    """

    def __call__(self, key: jax.Array, obs: Observation, state: EnvState, params: EnvParams) -> Action:
        del key, state, params
        slots = jnp.arange(obs.active.shape[0])
        buffer, last_action, received = obs.ue.buffer[:, 0], obs.ue.action[:, 0], obs.ue.dcm[:, 0]
        acked = received == ACKNOWLEDGE
        ue = jnp.where(acked & (buffer > 0), DELETE, NOTHING)
        ue = jnp.where((received == SCHEDULE_GRANT) & (buffer > 0), TRANSMIT, ue)
        in_flight = (last_action == TRANSMIT) & ~acked
        waiting = buffer - (ue == DELETE) - in_flight  # SDUs with no transmission under way
        ucm = jnp.where((ue != TRANSMIT) & (waiting > 0), SCHEDULE_REQUEST, UCM_NULL)

        ack = (obs.bs.channel[0] == SUCCESS) & (slots == obs.bs.sender[0])
        granted_last = obs.bs.dcm[:, 0] == SCHEDULE_GRANT
        requesting = obs.active & (obs.bs.ucm[:, 0] == SCHEDULE_REQUEST) & ~ack & ~granted_last
        last = jnp.where(jnp.any(granted_last), jnp.argmax(granted_last), -1)
        turn = jnp.mod(slots - last - 1, slots.shape[0])  # 0 for the slot right after the last grant
        first = jnp.argmin(jnp.where(requesting, turn, slots.shape[0]))
        grant = requesting & (slots == first)
        dcm = jnp.where(ack, ACKNOWLEDGE, jnp.where(grant, SCHEDULE_GRANT, DCM_NULL))
        return Action(ue=ue.astype(jnp.int32), ucm=ucm.astype(jnp.int32), dcm=dcm.astype(jnp.int32))
