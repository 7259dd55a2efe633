"""Categorical and Gumbel draws that compile to cheap kernels on CPU (the lowest layer: it
imports nothing of jaxmac).

``jax.random.categorical`` on (E, M, C) logits draws threefry bits in the logits' own shape;
on CPU, LLVM unrolled the small inner axes of those kernels (C = 6 or 3 candidates, M = 8 slots)
and spent 0.3-0.9 s on each of the four in the LLM4MAC training program. Drawing the same bits
over one flat axis and reshaping gives a one-axis kernel that compiles in a fraction of that.
The values are jax's own: threefry's counter of an element is its flat index, so
``gumbel(key, shape)`` equals ``jax.random.gumbel(key, shape)`` and ``categorical(key,
logits)`` equals ``jax.random.categorical(key, logits, axis=-1)`` (a test checks both).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def gumbel(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Standard Gumbel draws of ``shape``: ``jax.random.gumbel(key, shape, dtype)``'s values."""
    return jax.random.gumbel(key, (math.prod(shape),), dtype).reshape(shape)


def categorical(key: jax.Array, logits: jax.Array) -> jax.Array:
    """(...) int32 indices drawn from softmax(``logits``) over the last axis (the Gumbel-max
    trick): ``jax.random.categorical(key, logits, axis=-1)``'s values."""
    return jnp.argmax(logits + gumbel(key, logits.shape, logits.dtype), axis=-1)
