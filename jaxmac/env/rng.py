"""Cheap uniforms for the environment's per-TTI randomness.

One TTI needs 3M + 2 uniforms (churn, arrivals, decoding, reset) for each of
thousands of parallel episodes. jax.random's threefry spends most of an env step
on them on CPU (``experiments/bench_env.py`` measured the env 2.5x slower with
them), so the environment expands the caller's key, which threefry made, into its
uniforms with a counter-based hash: word i is ``fmix(k0 ^ fmix(k1 + i * phi))``,
with ``fmix`` the 32-bit finaliser of MurmurHash3 (full avalanche) and ``phi`` the
golden-ratio increment. Keys are never reused across TTIs (the caller splits them),
so draws are independent across TTIs and episodes; ``tests/test_rng.py`` checks
uniformity and independence. Policies and training keep using ``jax.random``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmac.hashing import fmix32

_GOLDEN = 0x9E3779B9
_RESOLUTION = 2.0**-24  # uniforms are multiples of this, in [0, 1)


def key_words(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two uint32 words of a PRNG key, typed (``jax.random.key``) or raw (``PRNGKey``)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return key[..., 0], key[..., -1]


def uniforms(key: jax.Array, n: int) -> jax.Array:
    """(n,) float32 uniforms in [0, 1) with 24-bit resolution, determined by ``key``."""
    k0, k1 = key_words(key)
    counter = jnp.arange(n, dtype=jnp.uint32)
    words = fmix32(k0 ^ fmix32(k1 + counter * jnp.uint32(_GOLDEN)))
    return (words >> 8).astype(jnp.float32) * jnp.float32(_RESOLUTION)
