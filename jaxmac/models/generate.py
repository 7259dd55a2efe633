"""Answer generation by the T5 inside jit: the encoder once, then a decoder loop over a
key/value cache (LLM-PT's acting, docs/SPEC.md §4).

Each decoder layer keeps the keys and values of the answer tokens generated so far (its
self-attention cache, written one position per step) and the keys and values of the encoder
states (its cross-attention cache, computed once), so a step costs one token's work through
the decoder instead of the whole answer's. The loop runs until every answer has ended with
``</s>`` or ``length`` tokens were generated; after its ``</s>`` an answer holds the pad
token, as ``transformers``' ``generate`` writes it. Greedy (``key=None``) or sampled at a
temperature; ``allowed`` restricts every step to tokens that continue one of a fixed set of
answers (constrained decoding).

Shapes: B prompts, L prompt length, T ``length`` (the answer's static maximum), H heads,
d_kv head width, C allowed answers of A tokens each.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxmac.models.t5 import T5, mask_bias
from jaxmac.sampling import categorical


@struct.dataclass
class KVCache:
    """Per decoder layer, keys and values (B, S, H, d_kv): of the answer so far (S = T, zero past
    the current step) and of the encoder states (S = L)."""

    self_keys: tuple[jax.Array, ...]
    self_values: tuple[jax.Array, ...]
    cross_keys: tuple[jax.Array, ...]
    cross_values: tuple[jax.Array, ...]


@struct.dataclass
class Generated:
    """Generated answers."""

    ids: jax.Array  # (B, T) int32 answer tokens, </s> included, then the pad token
    log_prob: jax.Array  # (B,) float32 sum of the chosen tokens' log-probabilities (temperature 1)


def init_cache(t5: T5, encoded: jax.Array, length: int) -> KVCache:
    """An empty self-attention cache of ``length`` positions and the cross-attention keys and
    values of ``encoded`` (B, L, d)."""
    b, cfg = encoded.shape[0], t5.cfg
    empty = jnp.zeros((b, length, cfg.num_heads, cfg.d_kv), t5.dtype)
    cross = [block.cross_attention for block in t5.decoder]
    return KVCache(
        self_keys=tuple(empty for _ in t5.decoder),
        self_values=tuple(empty for _ in t5.decoder),
        cross_keys=tuple(a.heads(a.k(encoded)) for a in cross),
        cross_values=tuple(a.heads(a.v(encoded)) for a in cross),
    )


def decode_step(
    t5: T5, cache: KVCache, token: jax.Array, position: jax.Array, attention_mask: jax.Array
) -> tuple[jax.Array, KVCache]:
    """Feed ``token`` (B,) at decoder ``position`` () -> (logits (B, V) of the next token, the
    cache with this position's keys and values). ``attention_mask`` (B, L): the prompt's tokens."""
    length = cache.self_keys[0].shape[1]
    seen = jnp.arange(length) <= position
    self_bias = t5.decoder[0].self_attention.position_bias(1, length, position) + mask_bias(
        jnp.broadcast_to(seen, (token.shape[0], length))
    )
    cross_bias = mask_bias(attention_mask)
    x = t5.shared(token[:, None])  # (B, 1, d)
    keys, values = list(cache.self_keys), list(cache.self_values)
    for i, block in enumerate(t5.decoder):
        attention = block.self_attention
        h = block.self_attention_norm(x)
        at = (0, position, 0, 0)
        keys[i] = jax.lax.dynamic_update_slice(keys[i], attention.heads(attention.k(h)), at)
        values[i] = jax.lax.dynamic_update_slice(values[i], attention.heads(attention.v(h)), at)
        x = x + attention.attend(attention.heads(attention.q(h)), keys[i], values[i], self_bias)
        cross = block.cross_attention
        h = block.cross_attention_norm(x)
        x = x + cross.attend(cross.heads(cross.q(h)), cache.cross_keys[i], cache.cross_values[i], cross_bias)
        x = x + block.ff(block.ff_norm(x))
    logits = t5.lm_logits(t5.decoder_norm(x))[:, 0]
    return logits, cache.replace(self_keys=tuple(keys), self_values=tuple(values))


def generate(
    t5: T5,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    length: int,
    *,
    key: jax.Array | None = None,
    temperature: float | jax.Array = 1.0,
    allowed: jax.Array | None = None,
) -> Generated:
    """Answers to prompts ``input_ids`` (B, L) under ``attention_mask``: greedy when ``key`` is
    None, else sampled from softmax(logits / ``temperature``). ``allowed`` (C, A) token ids of
    the only answers to generate (each ending in ``</s>``, padded; A <= ``length``): every step
    keeps to tokens that continue one of them (constrained decoding)."""
    cfg = t5.cfg
    b = input_ids.shape[0]
    if allowed is not None and allowed.shape[1] > length:
        raise ValueError(f"length must be >= the allowed answers' length {allowed.shape[1]}, got {length}")
    cache = init_cache(t5, t5.encode(input_ids, attention_mask), length)
    pad, eos = cfg.pad_token_id, cfg.eos_token_id
    if allowed is not None:
        allowed = jnp.pad(allowed, ((0, 0), (0, length - allowed.shape[1])), constant_values=pad)

    def running(carry: tuple) -> jax.Array:
        position, _, done, *_ = carry
        return (position < length) & ~jnp.all(done)

    def step(carry: tuple) -> tuple:
        position, token, done, ids, log_prob, alive, cache, step_key = carry
        logits, cache = decode_step(t5, cache, token, position, attention_mask)
        log_probs = jax.nn.log_softmax(logits)
        if alive is not None:  # tokens that continue an allowed answer still matching the prefix
            continues = (
                jnp.zeros_like(logits, bool).at[jnp.arange(b)[:, None], allowed[:, position]].max(alive)
            )
            logits = jnp.where(continues, logits, -jnp.inf)
        if step_key is None:
            chosen = jnp.argmax(logits, axis=-1)
        else:
            step_key, draw = jax.random.split(step_key)
            chosen = categorical(draw, logits / temperature)
        chosen = jnp.where(done, pad, chosen).astype(jnp.int32)
        picked = jnp.take_along_axis(log_probs, chosen[:, None], axis=-1)[:, 0]
        log_prob = log_prob + jnp.where(done, 0.0, picked)
        ids = jax.lax.dynamic_update_slice(ids, chosen[:, None], (0, position))
        if alive is not None:
            alive = alive & (allowed[None, :, position] == chosen[:, None])
        return position + 1, chosen, done | (chosen == eos), ids, log_prob, alive, cache, step_key

    start = jnp.full((b,), cfg.decoder_start_token_id, jnp.int32)
    alive = None if allowed is None else jnp.ones((b, allowed.shape[0]), bool)
    carry = (
        jnp.int32(0),
        start,
        jnp.zeros(b, bool),
        jnp.full((b, length), pad, jnp.int32),
        jnp.zeros(b, jnp.float32),
        alive,
        cache,
        key,
    )
    _, _, _, ids, log_prob, *_ = jax.lax.while_loop(running, step, carry)
    return Generated(ids=ids, log_prob=log_prob)
