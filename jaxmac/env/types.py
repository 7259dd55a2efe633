"""Pytrees that cross the environment's interface. Shapes use M = max_ues, k = history."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Action:
    """One TTI's decisions for every slot; entries of padded slots are ignored."""

    ue: jax.Array  # (M,) int32, UE buffer action: 0 nothing, 1 transmit, 2 delete
    ucm: jax.Array  # (M,) int32, uplink control message each UE sends, in [0, ucm_vocab)
    dcm: jax.Array  # (M,) int32, downlink control message the BS sends to each UE, in [0, dcm_vocab)


@struct.dataclass
class UEObservation:
    """What each UE sees; row i is UE i's view. Column 0 is the latest TTI."""

    buffer: jax.Array  # (M, k) int32, SDUs in the UE's FIFO at the end of each TTI
    action: jax.Array  # (M, k) int32, the buffer action the UE chose
    ucm: jax.Array  # (M, k) int32, the UCM the UE sent
    dcm: jax.Array  # (M, k) int32, the DCM the UE received


@struct.dataclass
class BSObservation:
    """What the base station sees. Column 0 is the latest TTI."""

    channel: jax.Array  # (k,) int32, PUSCH outcome: 0 idle, 1 collision, 2 success, 3 failure
    sender: jax.Array  # (k,) int32, the lone transmitter's slot (DMRS), -1 when idle or collision
    ucm: jax.Array  # (M, k) int32, the UCM received from each UE slot
    dcm: jax.Array  # (M, k) int32, the DCM sent to each UE slot


@struct.dataclass
class Observation:
    """All agents' observations. Rows of padded slots are all zero (the ``null`` history)."""

    ue: UEObservation
    bs: BSObservation
    active: jax.Array  # (M,) bool, which slots hold a real UE


@struct.dataclass
class TTICounters:
    """Event counts of one TTI (docs/SPEC.md §1.5), over active UEs only."""

    arrivals: jax.Array  # () int32, SDUs generated (including dropped ones)
    drops: jax.Array  # () int32, arrivals that found the FIFO full
    lost: jax.Array  # () int32, SDUs flushed by departing UEs (churn)
    lost_delivered: jax.Array  # () int32, of those, SDUs the BS had already received
    deliveries: jax.Array  # () int32, SDUs the BS decoded for the first time
    duplicates: jax.Array  # () int32, SDUs the BS decoded again
    failures: jax.Array  # () int32, lone transmissions lost to TBLER
    collisions: jax.Array  # () int32, 1 if two or more UEs transmitted
    idle: jax.Array  # () int32, 1 if nobody transmitted
    wasted: jax.Array  # () int32, 1 if collision, or idle while an active UE had a transmittable SDU
    bad_deletes: jax.Array  # () int32, deletes of SDUs the BS had not received (data lost)
    good_deletes: jax.Array  # () int32, deletes of SDUs the BS had received
    buffered: jax.Array  # () int32, SDUs in all active FIFOs at the end of the TTI
    buffered_delivered: jax.Array  # () int32, of those, SDUs the BS had already received
    active_ues: jax.Array  # () int32, active UEs at the end of the TTI

    @classmethod
    def zeros(cls) -> TTICounters:
        return cls(**{name: jnp.zeros((), jnp.int32) for name in cls.__dataclass_fields__})


@struct.dataclass
class EpisodeTotals:
    """Running sums over the current episode; complete in the ``info`` of its last TTI."""

    counters: TTICounters  # sums over TTIs (buffered/active_ues summed too: occupancy integrals)
    last: TTICounters  # the latest TTI's counters (end-of-episode buffer contents)
    reward: jax.Array  # () float32, the undiscounted return
    n_ues: jax.Array  # () int32, active UEs drawn at reset: the episode's UE count
    length: jax.Array  # () int32, TTIs so far


@struct.dataclass
class EnvState:
    """Full state of one episode. A FIFO is its length plus one flag: only the head-of-line
    SDU is ever transmitted, so it is the only one the BS can have received (docs/SPEC.md §1.2)."""

    active: jax.Array  # (M,) bool
    queue: jax.Array  # (M,) int32, SDUs in each FIFO, 0..B
    hol_delivered: jax.Array  # (M,) bool, the BS has received the head-of-line SDU
    ue_history: UEObservation  # (M, k) fields
    channel: jax.Array  # (k,) int32
    sender: jax.Array  # (k,) int32
    t: jax.Array  # () int32, TTIs elapsed in this episode
    totals: EpisodeTotals


@struct.dataclass
class ResetDraws:
    """The randomness of one reset."""

    n_ues: jax.Array  # () float32 uniform in [0, 1): picks the UE count in [n_min, n_max]


@struct.dataclass
class StepDraws:
    """The randomness of one TTI, drawn independently of state and actions, so two
    policies stepped with the same keys see the same arrivals (common random numbers)."""

    leave: jax.Array  # (M,) float32 uniform, churn departure if < churn
    join: jax.Array  # (M,) float32 uniform, churn join if < churn
    arrive: jax.Array  # (M,) float32 uniform, SDU arrival if < p_arrival
    decode: jax.Array  # () float32 uniform, a lone transmission fails if < tbler
    reset: ResetDraws  # used when this TTI ends the episode


@struct.dataclass
class StepInfo:
    """What ``step`` reports besides the reward."""

    tti: TTICounters
    episode: EpisodeTotals  # the finished episode's totals when ``done``, else the running ones
