"""The training rollout every algorithm shares: ``length`` TTIs of the parallel episodes acted
by an agent's sampled decisions, through the one rollout of ``jaxmac.evaluation.rollout``
(each episode drawing its UE count in [n_min, n_max] at every reset)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxmac.agents import Agent, AgentOutput, Params
from jaxmac.env import Action, EnvParams, EnvState, Observation
from jaxmac.evaluation.rollout import rollout as run_ttis


@struct.dataclass
class Step:
    """One TTI of every episode (leading (T, E) when stacked)."""

    obs: Observation  # what the agents saw
    sample: Any  # the policy's sample (``JointPolicy.sample``; opaque to the algorithms)
    reward: jax.Array  # team reward
    done: jax.Array  # the TTI ended its episode (the next observation is a reset's)
    record: Any  # what the algorithm keeps of the agent's output (``rollout``'s ``record``)


def training_keys(
    key: jax.Array, length: int, num_envs: int
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """The keys of ``length`` TTIs: each TTI splits the running key into the next one, the
    batch's action key and the key split over the episodes' steps. Returns the running key
    after them and ``(env_keys (T, E, 2), act_keys (T, 2))``."""

    def one(key: jax.Array, _: None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        key, act_key, env_key = jax.random.split(key, 3)
        return key, (jax.random.split(env_key, num_envs), act_key)

    return jax.lax.scan(one, key, None, length=length)


def rollout(
    agent: Agent,
    params: Params,
    env_params: EnvParams,
    env_state: EnvState,
    obs: Observation,
    key: jax.Array,
    length: int,
    *,
    record: Callable[[AgentOutput, Any], Any] = lambda out, sample: None,
    constrain: Callable[[Any], Any] = lambda tree: tree,
) -> tuple[tuple[EnvState, Observation, jax.Array], Step, dict[str, jax.Array]]:
    """``length`` TTIs from ``env_state``/``obs`` (leading axis: the E episodes), the policy's
    actions sampled. ``record(out, sample)`` picks what each TTI keeps of the agent's output
    (PPO: the sample's log-probability and the value); ``constrain`` pins a tree of episode
    arrays to the device mesh. Returns the final ``(env_state, obs, key)``, the (T, E) steps
    and the rollout's ``episodes`` (finished), ``return`` and ``throughput`` (means over the
    episodes that finished in it; NaN if none did)."""
    key, keys = training_keys(key, length, obs.active.shape[0])

    def act(act_key: jax.Array, obs: Observation, state: EnvState, _: EnvParams) -> tuple[Action, tuple]:
        out = agent(params, obs)
        sample = out.policy.sample(act_key)
        return out.policy.to_action(sample), (obs, sample, record(out, sample))

    (env_state, obs), trajectory = run_ttis(
        agent.env, act, env_params, env_state, obs, keys, constrain=constrain
    )
    seen, sample, kept = trajectory.kept
    steps = Step(obs=seen, sample=sample, reward=trajectory.reward, done=trajectory.done, record=kept)
    done = trajectory.done.astype(jnp.float32)
    n_done = jnp.sum(done)
    metrics = {
        "episodes": n_done,
        "return": jnp.sum(done * trajectory.episode["return"]) / n_done,
        "throughput": jnp.sum(done * trajectory.episode["throughput"]) / n_done,
    }
    return (env_state, obs, key), steps, metrics
