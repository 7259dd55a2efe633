"""Run a per-row function on the distinct rows of a batch only (issue: do not compute the
same prompt twice). Across thousands of parallel episodes most prompts of a TTI repeat.

Rows are grouped exactly: sorted by a 64-bit hash, then split wherever a row differs from
its sorted neighbour, so a group only ever holds identical rows (a hash collision can only
split a group, never merge different rows). The function runs on one representative per
group, padded to a static capacity, and the results are gathered back, so gradients are
exact. Shapes are static, so the capacities are a ladder (``capacity_ladder``): the smallest
one that holds the batch's distinct rows runs (``lax.switch``), and a batch with more
distinct rows than the largest runs on all rows. Use it on the flattened batch, not under
``vmap`` (there the switch would run every branch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def capacity_ladder(rows: int, smallest: int = 64, factor: int = 4) -> tuple[int, ...]:
    """Capacities smallest, smallest*factor, ... below ``rows`` (each costs one more compiled
    branch; the work done is at most ``factor`` times the distinct rows, or all rows)."""
    if smallest < 1 or factor < 2:
        raise ValueError(f"capacity_ladder needs smallest >= 1 and factor >= 2, got {smallest}, {factor}")
    ladder = []
    capacity = smallest
    while capacity < rows:
        ladder.append(capacity)
        capacity *= factor
    return tuple(ladder)


def deduplicated(
    fn: Callable[..., Any], capacities: int | Sequence[int], keys: jax.Array, *rows: jax.Array
) -> Any:
    """``fn(*rows)`` for row-aligned arrays (P, ...) -> pytree of (P, ...), computed on the
    distinct rows of ``keys`` (P, K) only; identical to ``fn(*rows)``."""
    ladder = sorted({capacities} if isinstance(capacities, int) else set(capacities))
    if not ladder or ladder[0] < 1:
        raise ValueError(f"dedup capacities must be positive integers, got {capacities}")
    representative, group, count = group_rows(keys, ladder[-1])

    def on_distinct(capacity: int) -> Callable[[], Any]:
        def branch() -> Any:
            out = fn(*(r[representative[:capacity]] for r in rows))
            return jax.tree.map(lambda o: o[group], out)

        return branch

    branches = [on_distinct(c) for c in ladder] + [lambda: fn(*rows)]
    index = jnp.searchsorted(jnp.asarray(ladder), count)  # first capacity >= count, else the fallback
    return jax.lax.switch(index, branches)


def deduplicated_chunks(fn: Callable[..., Any], chunk: int, keys: jax.Array, *rows: jax.Array) -> Any:
    """Like ``deduplicated`` but for inference (rollouts, evaluation): the distinct rows run in
    chunks of ``chunk`` rows inside a loop whose trip count is the number of chunks they fill,
    so the work follows the batch's distinct rows (rounded up to ``chunk``) with one compiled
    shape. The loop's trip count is data-dependent, so this cannot be reverse-differentiated;
    under ``jax.grad`` use ``deduplicated``."""
    if chunk < 1:
        raise ValueError(f"dedup chunk must be >= 1, got {chunk}")
    p = keys.shape[0]
    chunk = min(chunk, p)
    representative, group, count = group_rows(keys, p)  # capacity p: every group has one
    padded = -(-p // chunk) * chunk
    representative = jnp.pad(representative, (0, padded - p))
    shapes = jax.eval_shape(fn, *(r[:chunk] for r in rows))
    buffers = jax.tree.map(lambda s: jnp.zeros((padded, *s.shape[1:]), s.dtype), shapes)

    def body(i: jax.Array, buffers: Any) -> Any:
        index = jax.lax.dynamic_slice_in_dim(representative, i * chunk, chunk)
        out = fn(*(r[index] for r in rows))
        return jax.tree.map(
            lambda b, o: jax.lax.dynamic_update_slice_in_dim(b, o, i * chunk, 0), buffers, out
        )

    buffers = jax.lax.fori_loop(0, (count + chunk - 1) // chunk, body, buffers)
    return jax.tree.map(lambda b: b[group], buffers)
