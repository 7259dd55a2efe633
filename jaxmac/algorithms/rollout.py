"""The training rollout every algorithm shares: ``length`` TTIs of a batch of parallel
episodes acted by an agent, as a ``lax.scan`` over TTIs of the environment vmapped over the
episodes (each drawing its UE count in [n_min, n_max] at every reset)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxmac.agents import Agent, AgentOutput, Params
from jaxmac.env import EnvParams, EnvState, Observation
from jaxmac.evaluation.metrics import episode_metrics


@struct.dataclass
class Step:
    """One TTI of every episode (leading (T, E) when stacked)."""

    obs: Observation  # what the agents saw
    sample: Any  # the policy's sample (``JointPolicy.sample``; opaque to the algorithms)
    reward: jax.Array  # team reward
    done: jax.Array  # the TTI ended its episode (the next observation is a reset's)
    record: Any  # what the algorithm keeps of the agent's output (``rollout``'s ``record``)


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
    env = agent.env
    num_envs = obs.active.shape[0]
    step_env = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def tti(carry: tuple, _: None) -> tuple[tuple, tuple[Step, dict[str, jax.Array]]]:
        env_state, obs, key = carry
        key, act_key, env_key = jax.random.split(key, 3)
        out = agent(params, obs)
        sample = out.policy.sample(act_key)
        env_keys = jax.random.split(env_key, num_envs)
        next_obs, env_state, reward, done, info = step_env(
            env_keys, env_state, out.policy.to_action(sample), env_params
        )
        step = Step(obs=obs, sample=sample, reward=reward, done=done, record=record(out, sample))
        finished = episode_metrics(info.episode, env.episode_len)
        stats = {"done": done, "return": finished["return"], "throughput": finished["throughput"]}
        return (constrain(env_state), constrain(next_obs), key), (step, stats)

    carry, (steps, stats) = jax.lax.scan(tti, (env_state, obs, key), None, length=length)
    done = stats["done"].astype(jnp.float32)
    n_done = jnp.sum(done)
    metrics = {
        "episodes": n_done,
        "return": jnp.sum(done * stats["return"]) / n_done,
        "throughput": jnp.sum(done * stats["throughput"]) / n_done,
    }
    return carry, steps, metrics
