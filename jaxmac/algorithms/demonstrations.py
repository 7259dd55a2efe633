"""LLM-PT's dataset, recorded inside jit: the Baseline's answers to the SIE prompts.

Episodes of a scripted protocol (``contention_free``, the human-crafted Baseline) run through
the shared rollout; at every TTI each active agent's prompt is compiled to token ids, exactly
as a language agent sees it, and paired with the Baseline's decision as the index of the
candidate answer that spells it (``transmit schedule_request``, ``acknowledge``, ...). The
pairs of each agent group (UEs, BS) are deduplicated (``jaxmac.models.dedup.group_rows``)
and split by a hash of the pair, so a pair is held out wherever it occurs (each keeps the number
of times it was recorded, its ``occurrences``), then compacted to
the front of fixed-capacity arrays (a static shape for any count; the pairs past a capacity
are dropped, and ``distinct`` says how many there were).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxmac.algorithms.base import check_range, reset_episodes
from jaxmac.algorithms.rollout import training_keys
from jaxmac.env import Action, EnvParams, EnvState, Observation
from jaxmac.evaluation.rollout import rollout
from jaxmac.language import PromptCompiler
from jaxmac.models.dedup import group_rows, row_hash
from jaxmac.protocols.base import Policy
from jaxmac.protocols.uniform import UniformRandom


@struct.dataclass
class Examples:
    """Distinct (prompt, answer) pairs of one agent group; rows past ``count`` are padding."""

    prompts: jax.Array  # (N, L) int32 prompt token ids (pad after the prompt)
    answers: jax.Array  # (N,) int32 index of the candidate answer
    occurrences: jax.Array  # (N,) int32 times the pair was recorded (0 past ``count``)
    count: jax.Array  # () int32 rows that hold a pair


@struct.dataclass
class Demonstrations:
    """The training and held-out pairs of both agent groups."""

    ue_train: Examples
    ue_heldout: Examples
    bs_train: Examples
    bs_heldout: Examples
    distinct: jax.Array  # (2,) int32 distinct pairs recorded of the UEs and of the BS (before capacities)


def _split(
    prompts: jax.Array,
    answers: jax.Array,
    valid: jax.Array,
    capacity: int,
    heldout_capacity: int,
    percent: int,
) -> tuple[Examples, Examples, jax.Array]:
    """Deduplicate P recorded rows (prompts (P, L), answers (P,), valid (P,)) and split them."""
    keys = jnp.where(valid[:, None], jnp.concatenate([prompts, answers[:, None]], axis=1), -1)
    representative, group, count = group_rows(keys)
    real = (jnp.arange(keys.shape[0]) < count) & valid[representative]
    occurrences = jnp.zeros(keys.shape[0], jnp.int32).at[group].add(valid.astype(jnp.int32))
    heldout = row_hash(keys[representative], 0x2545F491) % 100 < percent

    def compact(keep: jax.Array, size: int) -> Examples:
        groups = jnp.nonzero(keep, size=size, fill_value=0)[0]
        rows = representative[groups]
        n = jnp.minimum(jnp.sum(keep), size).astype(jnp.int32)
        live = jnp.arange(size) < n
        return Examples(
            prompts=jnp.where(live[:, None], prompts[rows], 0),
            answers=jnp.where(live, answers[rows], 0),
            occurrences=jnp.where(live, occurrences[groups], 0),
            count=n,
        )

    return compact(real & ~heldout, capacity), compact(real & heldout, heldout_capacity), jnp.sum(real)


def record_demonstrations(
    compiler: PromptCompiler,
    protocol: Policy,
    env_params: EnvParams,
    key: jax.Array,
    *,
    episodes: int,
    capacity: int,
    heldout_percent: int,
    noise: Any = 0.0,
) -> Demonstrations:
    """``episodes`` episodes of ``protocol`` (a per-episode policy) under ``env_params`` (UE
    counts drawn from its range at each reset, churn as it says): every active agent's prompt
    and answer at every TTI, deduplicated and split (``heldout_percent`` of the pairs held
    out), ``capacity`` training pairs per agent group at most (held out: its share of it).

    ``noise`` (a probability, may be traced): each decision the episodes take is, with that
    probability, a uniformly random one instead of the protocol's (each UE's action and UCM
    together, each of the BS's DCMs apart), while the answer recorded is still the protocol's
    decision at that observation. The recorded states then include those a learner's mistakes
    lead to, which the protocol alone never visits (noise injection against behaviour
    cloning's compounding error, DART; Laskey et al. 2017). At 0 the recording is the
    protocol's own, as docs/SPEC.md §4 describes LLM-PT's data; above 0 the answers are still
    the Baseline's but the states are no longer only those its own episodes reach. A concrete
    ``noise`` outside [0, 1], or NaN, is an error naming it (``check_range``)."""
    check_range("noise", noise, 0.0, 1.0, inclusive=True)
    env = compiler.template.env
    ucm_vocab = env.ucm_vocab
    reset_key, run_key = jax.random.split(key)
    obs, env_state = reset_episodes(env, reset_key, episodes, env_params, None)
    _, keys = training_keys(run_key, env.episode_len, episodes)

    scrambler = UniformRandom(ucm_vocab, env.dcm_vocab)

    def act(act_key: jax.Array, obs: Observation, state: EnvState, params: EnvParams) -> tuple[Action, tuple]:
        protocol_key, random_key, choice_key = jax.random.split(act_key, 3)
        per_episode = lambda policy, key: jax.vmap(policy, in_axes=(0, 0, 0, None))(  # noqa: E731
            jax.random.split(key, episodes), obs, state, params
        )
        action = per_episode(protocol, protocol_key)
        prompts = jax.vmap(compiler)(obs)
        answers = (action.ue * ucm_vocab + action.ucm, action.dcm)
        scrambled = per_episode(scrambler, random_key)
        ue_random, bs_random = jax.random.uniform(choice_key, (2, *obs.active.shape)) < noise
        taken = Action(
            ue=jnp.where(ue_random, scrambled.ue, action.ue),
            ucm=jnp.where(ue_random, scrambled.ucm, action.ucm),
            dcm=jnp.where(bs_random, scrambled.dcm, action.dcm),
        )
        return taken, (prompts.ue_ids, prompts.bs_ids, *answers, obs.active)

    _, trajectory = rollout(env, act, env_params, env_state, obs, keys)
    ue_ids, bs_ids, ue_answers, bs_answers, active = trajectory.kept  # (T, E, M, ...)
    valid = active.reshape(-1)
    heldout_capacity = max(1, capacity * heldout_percent // 100)
    split = lambda ids, answers: _split(  # noqa: E731
        ids.reshape(-1, ids.shape[-1]),
        answers.reshape(-1),
        valid,
        capacity,
        heldout_capacity,
        heldout_percent,
    )
    ue_train, ue_heldout, ue_distinct = split(ue_ids, ue_answers)
    bs_train, bs_heldout, bs_distinct = split(bs_ids, bs_answers)
    return Demonstrations(
        ue_train=ue_train,
        ue_heldout=ue_heldout,
        bs_train=bs_train,
        bs_heldout=bs_heldout,
        distinct=jnp.stack([ue_distinct, bs_distinct]).astype(jnp.int32),
    )
