"""A 32-bit integer hash shared by the environment's counter-based uniforms and the model's
grouping of identical prompts (the lowest layer: it imports nothing of jaxmac)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection on uint32 with full avalanche."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)
