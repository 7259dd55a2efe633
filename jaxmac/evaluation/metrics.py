"""Per-episode metrics of docs/SPEC.md §1.5, computed from an episode's totals (jittable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmac.env import EpisodeTotals

#: Event counts summed over the episode, reported as per-episode means.
COUNT_METRICS = (
    "deliveries",
    "duplicates",
    "collisions",
    "idle",
    "wasted",
    "failures",
    "bad_deletes",
    "good_deletes",
    "drops",
    "lost",
    "arrivals",
)

#: Every metric ``episode_metrics`` returns, in table order.
METRICS = ("throughput", "return", *COUNT_METRICS, "buffer_occupancy")


def episode_metrics(totals: EpisodeTotals, episode_len: int) -> dict[str, jax.Array]:
    """Metrics of one finished episode.

    ``throughput`` is deliveries / episode_len in SDUs per TTI (paper Eq. 12).
    ``buffer_occupancy`` is the mean FIFO length in SDUs over active UEs and TTIs, taken at
    the end of each TTI. ``return`` is the undiscounted sum of team rewards.
    """
    c = totals.counters
    metrics = {name: getattr(c, name).astype(jnp.float32) for name in COUNT_METRICS}
    metrics["throughput"] = c.deliveries / jnp.float32(episode_len)
    metrics["return"] = totals.reward
    metrics["buffer_occupancy"] = c.buffered / jnp.maximum(c.active_ues, 1).astype(jnp.float32)
    return {name: metrics[name] for name in METRICS}
