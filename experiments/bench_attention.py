"""Masked multi-head attention with a position bias (the T5 pattern) on this machine.

The pin of jax in pyproject.toml was chosen with this script: run it under two jax
versions and compare milliseconds per call (lower is better).

    python experiments/bench_attention.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, mask: jax.Array) -> jax.Array:
    """q, k, v: (batch, length, heads, head_dim); bias: (1, heads, length, length); mask: (batch, length)."""
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) + bias
    scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(scores.dtype).min)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, -1), v)


def main() -> None:
    fn = jax.jit(attention)
    print(f"jax {jax.__version__}")
    print(f"{'batch':>6} {'length':>6} {'ms/call':>8}")
    for batch, length in [(64, 48), (512, 48), (2048, 64)]:
        key = jax.random.PRNGKey(0)
        q = jax.random.normal(key, (batch, length, 6, 64))
        bias = jax.random.normal(key, (1, 6, length, length))
        mask = jnp.arange(length)[None, :] < jnp.full((batch, 1), length - 5)
        fn(q, q, q, bias, mask).block_until_ready()
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            fn(q, q, q, bias, mask).block_until_ready()
            times.append(time.perf_counter() - t0)
        print(f"{batch:>6} {length:>6} {min(times) * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
