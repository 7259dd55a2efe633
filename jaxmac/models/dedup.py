"""Run a per-row function on the distinct rows of a batch only (issue: do not compute the
same prompt twice). Across thousands of parallel episodes most prompts of a TTI repeat.

Rows are grouped exactly: sorted by a 64-bit hash, then split wherever a row differs from
its sorted neighbour, so a group only ever holds identical rows (a hash collision can only
split a group, never merge different rows). The function runs on one representative per
group, padded to a static ``capacity``, and the results are gathered back, so gradients are
exact. If a batch has more distinct rows than ``capacity``, it runs on all rows instead.
Use it on the flattened batch, not under ``vmap`` (there ``lax.cond`` would run both sides).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxmac.env.rng import fmix32

_SALTS = (0x68E31DA4, 0xB5297A4D)


def _row_hash(keys: jax.Array, salt: int) -> jax.Array:
    """(P, K) int -> (P,) uint32, a position-salted hash of each row."""
    position = fmix32(jnp.arange(keys.shape[1], dtype=jnp.uint32) ^ jnp.uint32(salt))
    return fmix32(jnp.sum(fmix32(keys.astype(jnp.uint32) ^ position), axis=1, dtype=jnp.uint32))


def group_rows(keys: jax.Array, capacity: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(P, K) int rows -> (representative (capacity,) row index of each group, group (P,) of
    each row, number of groups ()). Groups past ``capacity`` have no representative."""
    h0, h1 = (_row_hash(keys, s) for s in _SALTS)
    rows = jnp.arange(keys.shape[0])
    _, _, order = jax.lax.sort((h0, h1, rows), num_keys=2)
    ordered = keys[order]
    new = jnp.concatenate([jnp.ones(1, bool), jnp.any(ordered[1:] != ordered[:-1], axis=1)])
    group_sorted = jnp.cumsum(new) - 1
    group = jnp.zeros_like(group_sorted).at[order].set(group_sorted)
    representative = jnp.zeros(capacity, jnp.int32).at[group_sorted].set(order.astype(jnp.int32), mode="drop")
    return representative, group, group_sorted[-1] + 1


def deduplicated(fn: Callable[..., Any], capacity: int, keys: jax.Array, *rows: jax.Array) -> Any:
    """``fn(*rows)`` for row-aligned arrays (P, ...) -> pytree of (P, ...), computed on the
    distinct rows of ``keys`` (P, K) only; identical to ``fn(*rows)``."""
    representative, group, count = group_rows(keys, capacity)

    def on_distinct() -> Any:
        out = fn(*(r[representative] for r in rows))
        return jax.tree.map(lambda o: o[group], out)

    return jax.lax.cond(count <= capacity, on_distinct, lambda: fn(*rows))
