"""The one rollout of jaxmac: TTIs of a batch of parallel episodes, a ``lax.scan`` over TTIs of
the environment vmapped over the episodes. Training (``jaxmac.algorithms.rollout``) and
evaluation (``jaxmac.evaluate``) both run it; they differ only in how they lay out the keys,
how they act, and what they keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import struct

from jaxmac.env import Action, EnvParams, EnvState, Observation, UDTSEnv
from jaxmac.evaluation.metrics import episode_metrics

#: ``act(act_key, obs, state, env_params) -> (action, kept)``: the batch's decisions at one TTI
#: and what the caller keeps of it (obs, state and env_params have the leading episode axis,
#: env_params only when it is per episode).
Act = Callable[[Any, Observation, EnvState, EnvParams], tuple[Action, Any]]


@struct.dataclass
class Trajectory:
    """What a rollout returns per TTI (leading (T, E))."""

    kept: Any  # what ``act`` kept
    reward: jax.Array  # (T, E) team reward
    done: jax.Array  # (T, E) the TTI ended its episode (the next observation is a reset's)
    episode: dict[str, jax.Array]  # (T, E) per metric of ``episode_metrics``: the episode so far,
    # complete where ``done``


def rollout(
    env: UDTSEnv,
    act: Act,
    env_params: EnvParams,
    env_state: EnvState,
    obs: Observation,
    keys: tuple[jax.Array, Any],
    *,
    per_episode_params: bool = False,
    constrain: Callable[[Any], Any] = lambda tree: tree,
) -> tuple[tuple[EnvState, Observation], Trajectory]:
    """Run the TTIs of ``keys = (env_keys (T, E, 2), act_keys (T, ...))`` from ``env_state`` and
    ``obs`` (leading axis E). ``env_params`` is shared, or per episode (leading E) when
    ``per_episode_params``; ``constrain`` pins a tree of episode arrays to the device mesh.
    Episodes reset themselves after ``episode_len`` TTIs. Returns the final state and
    observations, and the ``Trajectory``."""
    step = jax.vmap(env.step, in_axes=(0, 0, 0, 0 if per_episode_params else None))

    def tti(carry: tuple, tti_keys: tuple) -> tuple[tuple, Trajectory]:
        env_state, obs = carry
        env_keys, act_key = tti_keys
        action, kept = act(act_key, obs, env_state, env_params)
        next_obs, env_state, reward, done, info = step(env_keys, env_state, action, env_params)
        episode = jax.vmap(episode_metrics, in_axes=(0, None))(info.episode, env.episode_len)
        return (constrain(env_state), constrain(next_obs)), Trajectory(kept, reward, done, episode)

    return jax.lax.scan(tti, (env_state, obs), keys)
