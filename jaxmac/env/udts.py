"""The uplink data transmission scheduling (UDTS) environment of docs/SPEC.md §1.

gymnax-style: ``UDTSEnv`` holds the static configuration (it fixes array shapes
and is hashable, so it can be a static jit argument); ``EnvParams`` holds what
may vary per episode or per sweep; ``reset``/``step`` are pure functions of a
key, a state and the params. ``step`` auto-resets after ``episode_len`` TTIs.

The randomness of a TTI is drawn first (``draw_step``), independently of the
state, and then applied (``transition``): the reference tests feed the same
draws to a NumPy model, and evaluations get common random numbers for free.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxmac.env import spaces
from jaxmac.env.params import EnvParams
from jaxmac.env.rng import uniforms
from jaxmac.env.types import (
    Action,
    BSObservation,
    EnvState,
    EpisodeTotals,
    Observation,
    ResetDraws,
    StepDraws,
    StepInfo,
    TTICounters,
    UEObservation,
)


def _push(history: jax.Array, latest: jax.Array) -> jax.Array:
    """Prepend ``latest`` as column 0 of a (..., k) history, dropping the oldest column."""
    return jnp.concatenate([latest[..., None], history[..., :-1]], axis=-1)


@dataclasses.dataclass(frozen=True)
class UDTSEnv:
    """Static configuration of the UDTS environment (docs/SPEC.md §1.1). Changing a field recompiles."""

    max_ues: int = 8  # M, padded UE dimension
    buffer_size: int = 20  # B, FIFO capacity in SDUs
    episode_len: int = 24  # T, TTIs per episode
    ucm_vocab: int = 2  # uplink control messages (2: null, schedule_request)
    dcm_vocab: int = 3  # downlink control messages (3: null, schedule_grant, acknowledge)
    history: int = 1  # k, past TTIs in each observation

    def __post_init__(self) -> None:
        for name in ("max_ues", "buffer_size", "episode_len", "ucm_vocab", "dcm_vocab", "history"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    # ----------------------------------------------------------------- vocabularies
    @property
    def ucm_words(self) -> tuple[str, ...]:
        return spaces.message_words(self.ucm_vocab, spaces.NAMED_UCM_WORDS)

    @property
    def dcm_words(self) -> tuple[str, ...]:
        return spaces.message_words(self.dcm_vocab, spaces.NAMED_DCM_WORDS)

    @property
    def default_params(self) -> EnvParams:
        """docs/SPEC.md defaults (``llm4mac`` reward), with ``n_max`` lowered to ``max_ues`` if needed."""
        n_max = min(EnvParams.n_max, self.max_ues)
        return EnvParams(n_min=min(EnvParams.n_min, n_max), n_max=n_max)

    def check_params(self, params: EnvParams) -> None:
        """Raise ``ValueError`` if concrete ``params`` do not fit this configuration."""
        if isinstance(params.n_max, jax.core.Tracer):
            return
        n_max = np.asarray(params.n_max)
        if np.any(n_max > self.max_ues):
            raise ValueError(f"n_max must be <= max_ues={self.max_ues}, got {n_max}")

    def check_action(self, action: Action) -> None:
        """Raise ``ValueError`` if a concrete ``action`` holds values outside its vocabulary.

        Inside jit the values cannot be inspected: there an out-of-range buffer action acts as
        ``nothing`` and an out-of-range message is recorded in the history as it is."""
        limits = {"ue": len(spaces.UE_ACTION_WORDS), "ucm": self.ucm_vocab, "dcm": self.dcm_vocab}
        for name, limit in limits.items():
            value = getattr(action, name)
            if isinstance(value, jax.core.Tracer):
                return
            value = np.asarray(value)
            if value.shape != (self.max_ues,):
                raise ValueError(f"action.{name} must have shape ({self.max_ues},), got {value.shape}")
            if np.any((value < 0) | (value >= limit)):
                raise ValueError(f"action.{name} values must be in [0, {limit}), got {value}")

    # ----------------------------------------------------------------- randomness
    def draw_reset(self, key: jax.Array) -> ResetDraws:
        """The randomness of a reset (``reset`` is ``reset_with(draw_reset(key), params)``)."""
        return ResetDraws(n_ues=uniforms(key, 1)[0])

    def draw_step(self, key: jax.Array) -> StepDraws:
        """The randomness of one TTI, independent of state and actions."""
        m = self.max_ues
        u = uniforms(key, 3 * m + 2)
        return StepDraws(
            leave=u[:m],
            join=u[m : 2 * m],
            arrive=u[2 * m : 3 * m],
            decode=u[3 * m],
            reset=ResetDraws(n_ues=u[-1]),
        )

    # ----------------------------------------------------------------- API
    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Observation, EnvState]:
        """Start an episode with a UE count drawn uniformly in [n_min, n_max], empty buffers."""
        self.check_params(params)
        state = self.reset_with(self.draw_reset(key), params)
        return self.get_obs(state), state

    def step(
        self, key: jax.Array, state: EnvState, action: Action, params: EnvParams
    ) -> tuple[Observation, EnvState, jax.Array, jax.Array, StepInfo]:
        """One TTI (docs/SPEC.md §1.2). Returns ``(obs, state, reward, done, info)``; when ``done`` the
        returned obs/state already belong to a fresh episode and ``info.episode`` holds the
        finished one."""
        self.check_params(params)
        self.check_action(action)
        return self.transition(state, action, self.draw_step(key), params)

    def get_obs(self, state: EnvState) -> Observation:
        history = state.ue_history
        bs = BSObservation(channel=state.channel, sender=state.sender, ucm=history.ucm, dcm=history.dcm)
        return Observation(ue=history, bs=bs, active=state.active)

    # ----------------------------------------------------------------- dynamics
    def reset_with(self, draws: ResetDraws, params: EnvParams) -> EnvState:
        """A fresh episode: the UE count from ``draws``, slots 0..n-1 active, empty FIFOs."""
        span = params.n_max - params.n_min + 1
        n_ues = params.n_min + jnp.minimum(jnp.floor(draws.n_ues * span).astype(jnp.int32), span - 1)
        m, k = self.max_ues, self.history
        zeros_mk = jnp.zeros((m, k), jnp.int32)
        return EnvState(
            active=jnp.arange(m) < n_ues,
            queue=jnp.zeros(m, jnp.int32),
            hol_delivered=jnp.zeros(m, bool),
            ue_history=UEObservation(buffer=zeros_mk, action=zeros_mk, ucm=zeros_mk, dcm=zeros_mk),
            channel=jnp.full(k, spaces.IDLE, jnp.int32),
            sender=jnp.full(k, spaces.NO_SENDER, jnp.int32),
            t=jnp.zeros((), jnp.int32),
            totals=EpisodeTotals(
                counters=TTICounters.zeros(),
                last=TTICounters.zeros(),
                reward=jnp.zeros((), jnp.float32),
                n_ues=n_ues.astype(jnp.int32),
                length=jnp.zeros((), jnp.int32),
            ),
        )

    def transition(
        self, state: EnvState, action: Action, draws: StepDraws, params: EnvParams
    ) -> tuple[Observation, EnvState, jax.Array, jax.Array, StepInfo]:
        """Apply one TTI with given randomness; ``step`` is ``transition`` of ``draw_step(key)``."""
        slots = jnp.arange(self.max_ues)
        count = lambda x: jnp.sum(x, dtype=jnp.int32)  # noqa: E731

        # 1. Churn: departures flush their FIFO (lost); joins start empty with a cleared history.
        leave = state.active & (draws.leave < params.churn)
        join = ~state.active & (slots < params.n_max) & (draws.join < params.churn)
        active = (state.active & ~leave) | join
        lost = jnp.where(leave, state.queue, 0)
        lost_delivered = leave & state.hol_delivered & (state.queue > 0)
        queue = jnp.where(active, state.queue, 0)
        hol_delivered = state.hol_delivered & active
        kept = state.active & active  # history survives only for UEs that stay

        # 2. Arrivals. The HOL SDU is transmittable only if it was queued before this TTI.
        transmittable = queue > 0
        arrive = active & (draws.arrive < params.p_arrival)
        drop = arrive & (queue >= self.buffer_size)
        queue = queue + (arrive & ~drop)

        # 3. UE actions on the HOL SDU (messages only show up in the next observations). Only
        #    UEs that were active when the action was chosen act or signal; a UE that joined in
        #    this TTI decided nothing yet, so it reads as nothing/null.
        ue_action = jnp.where(kept, action.ue, spaces.NOTHING)
        ucm = jnp.where(kept, action.ucm, 0)
        dcm = jnp.where(kept, action.dcm, 0)
        transmit = transmittable & (ue_action == spaces.TRANSMIT)
        delete = transmittable & (ue_action == spaces.DELETE)
        good_delete = delete & hol_delivered
        bad_delete = delete & ~hol_delivered

        # 4. Channel: a lone transmission is decoded with probability 1 - tbler.
        n_tx = count(transmit)
        lone = n_tx == 1
        decoded = lone & (draws.decode >= params.tbler)
        received = transmit & decoded
        delivery = received & ~hol_delivered
        duplicate = received & hol_delivered
        idle = n_tx == 0
        collision = n_tx >= 2
        failure = lone & ~decoded
        wasted = collision | (idle & jnp.any(transmittable))
        channel = jnp.select(
            [idle, collision, decoded], [spaces.IDLE, spaces.COLLISION, spaces.SUCCESS], spaces.FAILURE
        )
        sender = jnp.where(lone, jnp.argmax(transmit), spaces.NO_SENDER)

        queue = queue - delete
        hol_delivered = jnp.where(delete, False, hol_delivered | received)

        counters = TTICounters(
            arrivals=count(arrive),
            drops=count(drop),
            lost=jnp.sum(lost, dtype=jnp.int32),
            lost_delivered=count(lost_delivered),
            deliveries=count(delivery),
            duplicates=count(duplicate),
            failures=failure.astype(jnp.int32),
            collisions=collision.astype(jnp.int32),
            idle=idle.astype(jnp.int32),
            wasted=wasted.astype(jnp.int32),
            bad_deletes=count(bad_delete),
            good_deletes=count(good_delete),
            buffered=jnp.sum(queue, dtype=jnp.int32),
            buffered_delivered=count(hol_delivered & (queue > 0)),
            active_ues=count(active),
        )
        # 5. Shared team reward (docs/SPEC.md §1.4).
        reward = (
            params.w_delivery * counters.deliveries
            + params.w_duplicate * counters.duplicates
            + params.w_wasted * counters.wasted
            + params.w_bad_delete * counters.bad_deletes
            + params.w_good_delete * counters.good_deletes
            + params.w_failure * counters.failures
            + params.w_drop * counters.drops
        ).astype(jnp.float32)

        # 6. Next observations; padded and departed slots read as the all-null history.
        mask = lambda x: jnp.where(active[:, None], x, 0)  # noqa: E731
        clear = lambda x: jnp.where(kept[:, None], x, 0)  # noqa: E731
        old = state.ue_history
        ue_history = UEObservation(
            buffer=mask(_push(clear(old.buffer), queue)),
            action=mask(_push(clear(old.action), ue_action)),
            ucm=mask(_push(clear(old.ucm), ucm)),
            dcm=mask(_push(clear(old.dcm), dcm)),
        )
        totals = EpisodeTotals(
            counters=jax.tree.map(jnp.add, state.totals.counters, counters),
            last=counters,
            reward=state.totals.reward + reward,
            n_ues=state.totals.n_ues,
            length=state.totals.length + 1,
        )
        next_state = EnvState(
            active=active,
            queue=queue,
            hol_delivered=hol_delivered,
            ue_history=ue_history,
            channel=_push(state.channel, channel.astype(jnp.int32)),
            sender=_push(state.sender, sender.astype(jnp.int32)),
            t=state.t + 1,
            totals=totals,
        )
        done = next_state.t >= self.episode_len
        fresh = self.reset_with(draws.reset, params)
        next_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, next_state)
        return self.get_obs(next_state), next_state, reward, done, StepInfo(tti=counters, episode=totals)
