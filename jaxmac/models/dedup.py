"""Run a per-row function on the distinct rows of a batch only, forward and backward.

Across thousands of parallel episodes most prompts repeat (a 1024-episode rollout of the
Baseline holds under 3% distinct UE prompts), so the model runs on one representative of each
group of identical rows and the results are gathered back to every row.

Rows are grouped exactly: sorted by two 32-bit hashes, then split wherever a row differs from
its sorted neighbour, so a group only ever holds identical rows (a hash collision can only split
a group, never merge different rows). The representatives are processed in chunks of ``chunk``
rows inside a loop whose trip count is the number of chunks the distinct rows fill: one compiled
shape for any distinct count, work that follows the distinct count (rounded up to ``chunk``),
and peak memory set by the chunk, not by the batch.

``deduplicated`` is differentiable in ``params`` through a custom VJP that makes the backward
pass follow the distinct rows too: the cotangents of all rows of a group are summed (a row's
output is a gather of its group's, so duplicates add up), then for every chunk of
representatives the function is run again under ``jax.vjp`` and the parameter cotangents are
accumulated. The forward is thus computed twice (once for the outputs, once inside each chunk's
VJP) in exchange for memory that does not grow with the batch. The result equals the gradient
of the plain, undeduplicated ``fn(params, consts, *rows)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxmac.hashing import fmix32

_SALTS = (0x68E31DA4, 0xB5297A4D)


def row_hash(keys: jax.Array, salt: int) -> jax.Array:
    """(P, K) int -> (P,) uint32, a position-salted hash of each row."""
    position = fmix32(jnp.arange(keys.shape[1], dtype=jnp.uint32) ^ jnp.uint32(salt))
    return fmix32(jnp.sum(fmix32(keys.astype(jnp.uint32) ^ position), axis=1, dtype=jnp.uint32))


def group_rows(keys: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(P, K) int rows -> (representative (P,) row index of each group, group (P,) of each row,
    number of groups ()). Entries of ``representative`` past the number of groups are 0."""
    h0, h1 = (row_hash(keys, s) for s in _SALTS)
    rows = jnp.arange(keys.shape[0])
    _, _, order = jax.lax.sort((h0, h1, rows), num_keys=2)
    ordered = keys[order]
    new = jnp.concatenate([jnp.ones(1, bool), jnp.any(ordered[1:] != ordered[:-1], axis=1)])
    group_sorted = jnp.cumsum(new) - 1
    group = jnp.zeros_like(group_sorted).at[order].set(group_sorted)
    representative = jnp.zeros(keys.shape[0], jnp.int32).at[group_sorted].set(order.astype(jnp.int32))
    return representative, group, group_sorted[-1] + 1


def _chunks(representative: jax.Array, chunk: int) -> tuple[jax.Array, int]:
    """Pad the representatives to a whole number of chunks: ((P_pad,), P_pad)."""
    padded = -(-representative.shape[0] // chunk) * chunk
    return jnp.pad(representative, (0, padded - representative.shape[0])), padded


def _forward(
    fn: Callable[..., Any], chunk: int, params: Any, consts: Any, keys: jax.Array, *rows: jax.Array
) -> tuple[Any, tuple]:
    # The backward pass runs under the abstract mesh its equation recorded, which is an explicit
    # (possibly empty) mesh; tracing the forward under the same one lets a jitted ``fn`` reuse
    # its trace there (one Python trace per shape instead of two).
    with jax.sharding.use_abstract_mesh(jax.sharding.get_abstract_mesh()):
        return _forward_in_mesh(fn, chunk, params, consts, keys, *rows)


def _forward_in_mesh(
    fn: Callable[..., Any], chunk: int, params: Any, consts: Any, keys: jax.Array, *rows: jax.Array
) -> tuple[Any, tuple]:
    representative, group, count = group_rows(keys)
    representative, padded = _chunks(representative, chunk)
    shapes = jax.eval_shape(fn, params, consts, *(r[:chunk] for r in rows))
    buffers = jax.tree.map(lambda s: jnp.zeros((padded, *s.shape[1:]), s.dtype), shapes)

    def body(i: jax.Array, buffers: Any) -> Any:
        index = jax.lax.dynamic_slice_in_dim(representative, i * chunk, chunk)
        out = fn(params, consts, *(r[index] for r in rows))
        return jax.tree.map(
            lambda b, o: jax.lax.dynamic_update_slice_in_dim(b, o, i * chunk, 0), buffers, out
        )

    n_chunks = (count + chunk - 1) // chunk
    buffers = jax.lax.fori_loop(0, n_chunks, body, buffers)
    out = jax.tree.map(lambda b: b[group], buffers)
    return out, (params, consts, rows, representative, group, n_chunks)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def deduplicated(
    fn: Callable[..., Any], chunk: int, params: Any, consts: Any, keys: jax.Array, *rows: jax.Array
) -> Any:
    """``fn(params, consts, *rows)`` computed on the distinct rows of ``keys`` only.

    Args:
      fn: ``fn(params, consts, *rows) -> pytree of (R, ...)`` for R row-aligned inputs; it must
        treat rows independently (row i of the output depends on row i of the inputs only).
      chunk: distinct rows per step of the loop (static); at most P.
      params: differentiated pytree (the model's parameters).
      consts: a pytree passed to every call and not differentiated (e.g. candidate token ids).
      keys: (P, K) int; rows with equal keys must have equal outputs.
      rows: row-aligned arrays (P, ...), not differentiated (token ids and masks).
    Returns the pytree of (P, ...) outputs, equal to ``fn(params, consts, *rows)``.
    """
    return _forward(fn, chunk, params, consts, keys, *rows)[0]


def _backward(fn: Callable[..., Any], chunk: int, residuals: tuple, cotangent: Any) -> tuple:
    params, consts, rows, representative, group, n_chunks = residuals
    padded = representative.shape[0]
    per_group = jax.tree.map(lambda g: jax.ops.segment_sum(g, group, num_segments=padded), cotangent)

    flat, unravel = ravel_pytree(params)

    def body(i: jax.Array, grads: jax.Array) -> jax.Array:
        index = jax.lax.dynamic_slice_in_dim(representative, i * chunk, chunk)
        chunk_rows = tuple(r[index] for r in rows)
        _, vjp = jax.vjp(lambda p: fn(p, consts, *chunk_rows), params)
        (g,) = vjp(jax.tree.map(lambda c: jax.lax.dynamic_slice_in_dim(c, i * chunk, chunk), per_group))
        return grads + ravel_pytree(g)[0]

    # accumulated as one raveled vector: one add per chunk instead of one per parameter array
    grads = unravel(jax.lax.fori_loop(0, n_chunks, body, jnp.zeros_like(flat)))
    return (grads, None, None, *(None for _ in rows))


deduplicated.defvjp(_forward, _backward)


def distinct_keys(ids: jax.Array, mask: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """Grouping keys (P, L) of token rows: ids and mask together, and every row that is not
    ``valid`` (a padded agent slot, whose output is never used) one shared key, so that all
    of them cost a single row."""
    keys = ids * 2 + mask
    return keys if valid is None else jnp.where(valid[:, None], keys, -1)


def check_chunk(chunk: int) -> None:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"dedup_chunk must be an integer >= 1, got {chunk!r}")
