"""``evaluate``: many episodes at every UE count in one compiled program (paper Fig. 3).

Episodes are laid out as lanes, each with its own UE count (data, not a shape), and
run in chunks of a fixed number of lanes, so every call with the same environment,
policy and ``chunk_size`` reuses one compiled program whatever the UE counts, the
episode count or the parameter values. Lane (n, e) always uses the key
``fold_in(fold_in(key, n), e)``, and the environment's randomness is drawn apart
from the policy's, so two policies evaluated with the same key face the same
arrivals (common random numbers: their difference is less noisy), and a per-lane
policy the same draws. A ``batched`` policy (a trained agent) draws the decisions of a
whole chunk from one key, its first lane's: sampled, they depend on which lanes share
the chunk (the UE counts and episodes asked for, the chunk size); greedy they do not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmac.env import Action, EnvParams, EnvState, Observation, UDTSEnv
from jaxmac.evaluation.metrics import METRICS
from jaxmac.evaluation.rollout import rollout
from jaxmac.protocols.base import Policy

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def _run_episodes(
    env: UDTSEnv,
    policy: Policy,
    params: EnvParams,
    key: jax.Array,
    n_ues: jax.Array,
    episode: jax.Array,
    sharding: jax.sharding.Sharding | None = None,
) -> dict[str, jax.Array]:
    """One full episode per lane; ``n_ues`` and ``episode`` are (lanes,) int32. The TTIs are the
    shared rollout over the vmapped lanes (laid out over ``sharding`` if given), so a
    ``batched`` policy sees every lane at once."""
    lane_params = jax.vmap(lambda n: params.replace(n_min=n, n_max=n))(n_ues)
    lane_keys = jax.vmap(lambda n, e: jax.random.fold_in(jax.random.fold_in(key, n), e))(n_ues, episode)
    reset_keys, steps_keys = jnp.moveaxis(jax.vmap(jax.random.split)(lane_keys), 1, 0)
    obs, state = jax.vmap(env.reset)(reset_keys, lane_params)
    tti_keys = jnp.moveaxis(jax.vmap(lambda k: jax.random.split(k, env.episode_len))(steps_keys), 1, 0)
    env_keys, policy_keys = jnp.moveaxis(jax.vmap(jax.vmap(jax.random.split))(tti_keys), 2, 0)  # (T, lanes)
    if getattr(policy, "batched", False):
        decide = lambda keys, obs, state, params: policy(keys[0], obs, state, params)  # noqa: E731
    else:
        decide = jax.vmap(policy)

    def act(keys: jax.Array, obs: Observation, state: EnvState, params: EnvParams) -> tuple[Action, Any]:
        decided = decide(keys, obs, state, params)
        return decided if isinstance(decided, tuple) else (decided, {})

    def constrain(tree: Any) -> Any:
        return tree if sharding is None else jax.lax.with_sharding_constraint(tree, sharding)

    obs, state = constrain((obs, state))
    _, trajectory = rollout(
        env,
        act,
        lane_params,
        state,
        obs,
        (env_keys, policy_keys),
        per_episode_params=True,
        constrain=constrain,
    )
    metrics = jax.tree.map(lambda m: m[-1], trajectory.episode)  # every lane's episode ends at its last TTI
    metrics |= {name: jnp.sum(count, axis=0) for name, count in trajectory.kept.items()}
    if sharding is None:
        return metrics
    # every process of a multi-process run reads every lane's metrics (a few numbers per lane)
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    return jax.lax.with_sharding_constraint(metrics, replicated)


run_episodes = jax.jit(_run_episodes, static_argnames=("env", "sharding"))


@dataclasses.dataclass
class EvaluationTable:
    """One row per (policy, UE count): mean of every metric, 95% CI of the throughput, and under
    ``env`` the environment it was measured in (``environment``)."""

    rows: list[dict[str, Any]]

    def __add__(self, other: EvaluationTable) -> EvaluationTable:
        return EvaluationTable(self.rows + other.rows)

    def format(self) -> str:
        """A plain-text table (what ``jaxmac eval`` prints, and the README shows)."""
        columns = [
            "policy",
            "n_ues",
            "throughput",
            "throughput_ci95",
            "collisions",
            "wasted",
            "duplicates",
            "bad_deletes",
            "drops",
            "buffer_occupancy",
            "return",
        ]
        if any("valid_answers_pct" in row for row in self.rows):
            columns.append("valid_answers_pct")
        cells = [[_cell(row.get(c, "-")) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _summarise(name: str, n: int, metrics: dict[str, np.ndarray]) -> dict[str, Any]:
    episodes = len(metrics["throughput"])
    row: dict[str, Any] = {"policy": name, "n_ues": n, "episodes": episodes}
    for metric in METRICS:
        row[metric] = float(np.mean(metrics[metric]))
        if metric == "throughput":
            std = float(np.std(metrics[metric], ddof=1)) if episodes > 1 else math.nan
            row["throughput_ci95"] = Z_95 * std / math.sqrt(episodes)
    if "answers" in metrics:  # a generating policy: the share of its answers that parsed
        row["valid_answers_pct"] = 100.0 * float(
            np.sum(metrics["valid_answers"]) / np.sum(metrics["answers"])
        )
    return row


def evaluate(
    env: UDTSEnv,
    policy: Policy,
    params: EnvParams,
    n_ues: Sequence[int] | None = None,
    episodes: int = 1000,
    key: jax.Array | None = None,
    *,
    name: str | None = None,
    chunk_size: int = 4096,
    progress: Callable[[int, int], None] | None = None,
    sharding: jax.sharding.Sharding | None = None,
) -> EvaluationTable:
    """Run ``episodes`` episodes of ``policy`` at each fixed UE count in ``n_ues``.

    Args:
      env, params: the environment; ``params.n_min``/``n_max`` are replaced by each count.
      n_ues: UE counts, each in [1, env.max_ues]; default all of them.
      episodes: episodes per UE count.
      key: PRNG key (default ``PRNGKey(0)``).
      name: the policy's name in the rows (default its class name).
      chunk_size: lanes per compiled call; fixed, so it does not recompile.
      progress: called as ``progress(done, total)`` in episodes after every chunk.
      sharding: how the lanes of a chunk are laid out over devices (a ``NamedSharding`` of
        their leading axis; ``chunk_size`` a multiple of its devices); None: one device.
    """
    n_ues = list(range(1, env.max_ues + 1)) if n_ues is None else [int(n) for n in n_ues]
    if not n_ues or any(not 1 <= n <= env.max_ues for n in n_ues):
        raise ValueError(f"n_ues must be a non-empty list of counts in [1, {env.max_ues}], got {n_ues}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    env.check_params(params)
    key = jax.random.PRNGKey(0) if key is None else key
    name = type(policy).__name__ if name is None else name

    lane_n = np.repeat(np.asarray(n_ues, np.int32), episodes)
    lane_e = np.tile(np.arange(episodes, dtype=np.int32), len(n_ues))
    total = len(lane_n)
    padded = -(-total // chunk_size) * chunk_size
    lane_n = np.pad(lane_n, (0, padded - total), constant_values=n_ues[0])
    lane_e = np.pad(lane_e, (0, padded - total))
    chunks = []
    for start in range(0, padded, chunk_size):
        stop = start + chunk_size
        lanes = (jnp.asarray(lane_n[start:stop]), jnp.asarray(lane_e[start:stop]))
        out = run_episodes(env, policy, params, key, *lanes, sharding)
        chunks.append(jax.device_get(out))
        if progress is not None:
            progress(min(stop, total), total)
    metrics = {m: np.concatenate([c[m] for c in chunks])[:total] for m in chunks[0]}
    measured_in = environment(env, params)
    rows = [
        _summarise(name, n, {m: v[i * episodes : (i + 1) * episodes] for m, v in metrics.items()})
        | {"env": measured_in}
        for i, n in enumerate(n_ues)
    ]
    return EvaluationTable(rows)


def environment(env: UDTSEnv, params: EnvParams) -> dict[str, Any]:
    """What a row was measured under: the environment's fields and every ``EnvParams`` scalar
    but the UE range (each row has its own ``n_ues``)."""
    shape = {f.name: getattr(env, f.name) for f in dataclasses.fields(env)}
    values = {  # float32 values, written with the 7 digits they hold (0.9, not 0.8999999761581421)
        f.name: float(f"{float(getattr(params, f.name)):.7g}")
        for f in dataclasses.fields(params)
        if f.name not in ("n_min", "n_max")
    }
    return shape | values
