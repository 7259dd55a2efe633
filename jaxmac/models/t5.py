"""T5 v1.1 / Flan-T5 encoder-decoder in Flax NNX, numerically matching ``transformers``' PyTorch T5.

Gated-GELU feed-forward, RMS layer norm without mean subtraction or bias, unscaled dot-product
attention with relative position buckets computed in each stack's first layer and shared by
the others, untied LM head (or tied, and the T5 v1.0 d_model**-0.5 rescale, as configured).
No dropout: the model is deterministic, at inference and in PPO fine-tuning alike. A model
drawn at random (``tiny``, Abl. PK) is initialised as transformers initialises a T5: every
projection N(0, 1/fan) with T5's fans (the query's d_model * d_kv: the unscaled attention's
scale), the embedding and LM head N(0, 1); with Flax's default (lecun) draws instead, the
attention starts so sharp that the tiny model never learned to bind a prompt's UE lines to
their numbers. ``draw_params`` draws the same distribution from one random vector, in a program
that compiles far faster (the agents draw with it). (LLM4MAC's agent rescales a drawn LM head:
``jaxmac.agents.LLMAgent.init``.)
Parameters are float32; ``dtype`` sets the compute dtype (e.g. bfloat16); norms and softmax
always run in float32.

Shapes: B batch, L encoder length, D decoder length, d d_model, H heads, V vocab.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from flax import nnx, traverse_util

from jaxmac.models.config import T5Config


class RMSNorm(nnx.Module):
    """T5's layer norm: x / sqrt(mean(x^2) + eps) * weight, in float32."""

    def __init__(self, dim: int, eps: float, dtype: jnp.dtype) -> None:
        self.weight = nnx.Param(jnp.ones((dim,), jnp.float32), init_normal=(1.0, 0.0))
        self.eps, self.dtype = eps, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (self.weight[...] * x32).astype(self.dtype)


def _dense(d_in: int, d_out: int, std: float, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """A bias-free projection drawn from N(0, std^2), as T5 initialises each of its projections."""
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nnx.initializers.normal(std),
        kernel_metadata={"init_normal": (0.0, std)},
        rngs=rngs,
    )


def _embed(count: int, dim: int, std: float, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.Embed:
    return nnx.Embed(
        count,
        dim,
        dtype=dtype,
        param_dtype=jnp.float32,
        embedding_init=nnx.initializers.normal(std),
        embedding_metadata={"init_normal": (0.0, std)},
        rngs=rngs,
    )


def relative_position_bucket(
    relative: jax.Array, bidirectional: bool, num_buckets: int, max_distance: int
) -> jax.Array:
    """T5's bucketing of key_position - query_position: exact up to num_buckets/2 (per
    direction), logarithmic up to max_distance, clipped beyond."""
    bucket = jnp.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative > 0) * num_buckets
        distance = jnp.abs(relative)
    else:
        distance = -jnp.minimum(relative, 0)
    max_exact = num_buckets // 2
    log_ratio = jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact) / math.log(
        max_distance / max_exact
    )
    large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(relative.dtype)
    large = jnp.minimum(large, num_buckets - 1)
    return bucket + jnp.where(distance < max_exact, distance, large)


def project(x: jax.Array, layers: tuple[nnx.Module, ...]) -> list[jax.Array]:
    """``[layer(x) for layer in layers]`` for projections of one input: as one matrix product
    over their kernels stacked on a new axis when all are plain bias-free ``nnx.Linear`` of one
    dtype (fewer, larger products: the tiny T5's forward and backward pass over a chunk of 32
    UE and 32 BS prompts took 4-5% less time on a 2-core CPU; the stacked axis leaves each
    kernel's column-parallel split where it is), else one by one (LoRA-wrapped projections)."""
    plain = all(type(layer) is nnx.Linear and layer.bias is None for layer in layers)
    if len(layers) == 1 or not plain or len({layer.dtype for layer in layers}) > 1:
        return [layer(x) for layer in layers]
    dtype = layers[0].dtype
    kernel = jnp.stack([layer.kernel[...] for layer in layers], axis=1).astype(dtype)  # (d, n, out)
    y = jnp.einsum("...d,dno->...no", x.astype(dtype), kernel)
    return [y[..., i, :] for i in range(len(layers))]


class Attention(nnx.Module):
    """Multi-head attention without the 1/sqrt(d_kv) scale (folded into T5's initialisation)."""

    def __init__(
        self, cfg: T5Config, relative_bias: bool, bidirectional: bool, dtype: jnp.dtype, rngs: nnx.Rngs
    ) -> None:
        inner = cfg.num_heads * cfg.d_kv
        self.q = _dense(cfg.d_model, inner, (cfg.d_model * cfg.d_kv) ** -0.5, dtype, rngs)
        self.k = _dense(cfg.d_model, inner, cfg.d_model**-0.5, dtype, rngs)
        self.v = _dense(cfg.d_model, inner, cfg.d_model**-0.5, dtype, rngs)
        self.o = _dense(inner, cfg.d_model, inner**-0.5, dtype, rngs)
        self.relative_attention_bias = (
            _embed(cfg.relative_attention_num_buckets, cfg.num_heads, cfg.d_model**-0.5, jnp.float32, rngs)
            if relative_bias
            else None
        )
        self.cfg, self.bidirectional = cfg, bidirectional

    def position_bias(self, q_len: int, k_len: int, offset: jax.Array | int = 0) -> jax.Array:
        """(1, H, q_len, k_len) float32 learned bias of each query/key offset; the queries sit at
        positions ``offset + [0, q_len)`` (a decoding step's query is at its step)."""
        relative = jnp.arange(k_len)[None, :] - (offset + jnp.arange(q_len))[:, None]
        return self.relative_bias(relative[None])

    def relative_bias(self, relative: jax.Array) -> jax.Array:
        """(B, Q, K) int key position - query position -> (B, H, Q, K) float32 learned bias."""
        buckets = relative_position_bucket(
            relative,
            self.bidirectional,
            self.cfg.relative_attention_num_buckets,
            self.cfg.relative_attention_max_distance,
        )
        return jnp.moveaxis(self.relative_attention_bias(buckets), -1, 1).astype(jnp.float32)

    def heads(self, y: jax.Array) -> jax.Array:
        """(B, S, H * d_kv) -> (B, S, H, d_kv): a projection's output split into heads."""
        return y.reshape(*y.shape[:2], self.cfg.num_heads, self.cfg.d_kv)

    def attend(self, q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
        """Queries (B, Q, H, d_kv) over keys and values (B, K, H, d_kv) -> (B, Q, d)."""
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) + bias
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return self.o(out.reshape(*q.shape[:2], -1))

    def __call__(self, x: jax.Array, kv: jax.Array | None, bias: jax.Array) -> jax.Array:
        """x: (B, Q, d) queries; kv: (B, K, d) keys/values, None for self-attention (x's own);
        bias: (B or 1, H, Q, K) float32, position bias plus -inf-like entries where attention
        is masked."""
        if kv is None:
            q, k, v = project(x, (self.q, self.k, self.v))
        else:
            (q,), (k, v) = project(x, (self.q,)), project(kv, (self.k, self.v))
        return self.attend(self.heads(q), self.heads(k), self.heads(v), bias)


class GatedGeluFF(nnx.Module):
    def __init__(self, cfg: T5Config, dtype: jnp.dtype, rngs: nnx.Rngs) -> None:
        self.wi_0 = _dense(cfg.d_model, cfg.d_ff, cfg.d_model**-0.5, dtype, rngs)
        self.wi_1 = _dense(cfg.d_model, cfg.d_ff, cfg.d_model**-0.5, dtype, rngs)
        self.wo = _dense(cfg.d_ff, cfg.d_model, cfg.d_ff**-0.5, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        gate, linear = project(x, (self.wi_0, self.wi_1))
        return self.wo(jax.nn.gelu(gate, approximate=True) * linear)


class EncoderBlock(nnx.Module):
    def __init__(self, cfg: T5Config, first: bool, dtype: jnp.dtype, rngs: nnx.Rngs) -> None:
        self.attention_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, dtype)
        self.attention = Attention(cfg, first, True, dtype, rngs)
        self.ff_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, dtype)
        self.ff = GatedGeluFF(cfg, dtype, rngs)

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        h = self.attention_norm(x)
        x = x + self.attention(h, None, bias)
        return x + self.ff(self.ff_norm(x))


class DecoderBlock(nnx.Module):
    def __init__(self, cfg: T5Config, first: bool, dtype: jnp.dtype, rngs: nnx.Rngs) -> None:
        self.self_attention_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, dtype)
        self.self_attention = Attention(cfg, first, False, dtype, rngs)
        self.cross_attention_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, dtype)
        self.cross_attention = Attention(cfg, False, True, dtype, rngs)
        self.ff_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, dtype)
        self.ff = GatedGeluFF(cfg, dtype, rngs)

    def __call__(
        self, x: jax.Array, encoded: jax.Array, self_bias: jax.Array, cross_bias: jax.Array
    ) -> jax.Array:
        """x: (B, C, D, d), C decoder sequences per encoded input (B, L, d). Self-attention runs
        per sequence; cross-attention treats the C*D queries of an input as one axis (each query
        attends independently), so the encoder states are shared, never copied."""
        b, c, length, d = x.shape
        h = self.self_attention_norm(x).reshape(b * c, length, d)
        x = x + self.self_attention(h, None, self_bias).reshape(x.shape)
        h = self.cross_attention_norm(x).reshape(b, c * length, d)
        x = x + self.cross_attention(h, encoded, cross_bias).reshape(x.shape)
        return x + self.ff(self.ff_norm(x))


def mask_bias(mask: jax.Array) -> jax.Array:
    """(B, K) or (B, Q, K) bool -> additive float32 bias broadcastable to (B, H, Q, K)."""
    mask = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None]
    return jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min)


class T5(nnx.Module):
    """``model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask) -> logits``
    of shape (B, D, V), like ``transformers.T5ForConditionalGeneration``. ``encode``, ``decode``
    and ``lm_logits`` expose the parts, so an encoding can be reused across decoder calls."""

    def __init__(self, cfg: T5Config, *, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs) -> None:
        self.cfg, self.dtype = cfg, dtype
        self.shared = _embed(cfg.vocab_size, cfg.d_model, 1.0, dtype, rngs)
        self.encoder = nnx.List([EncoderBlock(cfg, i == 0, dtype, rngs) for i in range(cfg.num_layers)])
        self.encoder_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, dtype)
        self.decoder = nnx.List(
            [DecoderBlock(cfg, i == 0, dtype, rngs) for i in range(cfg.num_decoder_layers)]
        )
        self.decoder_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon, dtype)
        self.lm_head = (
            None if cfg.tie_word_embeddings else _dense(cfg.d_model, cfg.vocab_size, 1.0, dtype, rngs)
        )

    def encode(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """(B, L) ids and mask -> (B, L, d) final-normed encoder states."""
        length = input_ids.shape[1]
        bias = self.encoder[0].attention.position_bias(length, length) + mask_bias(attention_mask)
        x = self.shared(input_ids)
        for block in self.encoder:
            x = block(x, bias)
        return self.encoder_norm(x)

    def decode(
        self,
        decoder_input_ids: jax.Array,
        encoded: jax.Array,
        attention_mask: jax.Array,
        decoder_attention_mask: jax.Array | None = None,
    ) -> jax.Array:
        """Decoder ids (B, D), or (B, C, D) for C sequences per input, attending causally to
        themselves and to ``encoded`` (B, L, d) under ``attention_mask`` (B, L) -> final-normed
        decoder states (B, D, d) or (B, C, D, d)."""
        grouped = decoder_input_ids.ndim == 3
        ids = decoder_input_ids if grouped else decoder_input_ids[:, None]
        b, c, length = ids.shape
        causal = jnp.tril(jnp.ones((length, length), bool))[None]
        if decoder_attention_mask is not None:
            keys = decoder_attention_mask if grouped else decoder_attention_mask[:, None]
            causal = causal & keys.reshape(b * c, 1, length).astype(bool)
        self_bias = self.decoder[0].self_attention.position_bias(length, length) + mask_bias(causal)
        x = self._decoder_stack(self.shared(ids), encoded, self_bias, attention_mask)
        return x if grouped else x[:, 0]

    def decode_tree(
        self,
        node_ids: jax.Array,
        visible: jax.Array,
        depth: jax.Array,
        encoded: jax.Array,
        attention_mask: jax.Array,
    ) -> jax.Array:
        """The decoder over a prefix tree of positions: node ids (B, N), each attending to the
        nodes ``visible`` (B, N, N) bool to it (its ancestors and itself) at relative positions
        ``depth[key] - depth[query]`` ((B, N) int), and to ``encoded`` (B, L, d) under
        ``attention_mask`` (B, L) -> final-normed states (B, N, d). A node's state is the one
        ``decode`` gives at the end of the token path from the root to it: sequences that share
        a prefix share its positions, computed once."""
        relative = depth[:, None, :] - depth[:, :, None]
        self_bias = self.decoder[0].self_attention.relative_bias(relative) + mask_bias(visible)
        return self._decoder_stack(self.shared(node_ids)[:, None], encoded, self_bias, attention_mask)[:, 0]

    def _decoder_stack(
        self, x: jax.Array, encoded: jax.Array, self_bias: jax.Array, attention_mask: jax.Array
    ) -> jax.Array:
        """Embedded decoder inputs (B, C, D, d) through the blocks and the final norm."""
        cross_bias = mask_bias(attention_mask)
        for block in self.decoder:
            x = block(x, encoded, self_bias, cross_bias)
        return self.decoder_norm(x)

    def teacher_forced(
        self, answer_ids: jax.Array, answer_mask: jax.Array, encoded: jax.Array, attention_mask: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Answers (B, A) or (B, C, A) ids and mask (``</s>`` included), fed shifted right behind
        the decoder start token -> (decoder states (..., A, d), logits (..., A, V)): position j
        predicts answer token j from the prompt and the answer's tokens before it."""
        start = jnp.full((*answer_ids.shape[:-1], 1), self.cfg.decoder_start_token_id, jnp.int32)
        decoder_ids = jnp.concatenate([start, answer_ids[..., :-1]], axis=-1)
        decoder_mask = jnp.concatenate([jnp.ones_like(start, bool), answer_mask[..., :-1]], axis=-1)
        hidden = self.decode(decoder_ids, encoded, attention_mask, decoder_mask)
        return hidden, self.lm_logits(hidden)

    def lm_logits(self, hidden: jax.Array) -> jax.Array:
        """(..., d) decoder states -> (..., V) float32 logits."""
        if self.cfg.scale_decoder_outputs:
            hidden = hidden * self.cfg.d_model**-0.5
        logits = self.shared.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
        return logits.astype(jnp.float32)

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        decoder_input_ids: jax.Array,
        decoder_attention_mask: jax.Array | None = None,
    ) -> jax.Array:
        encoded = self.encode(input_ids, attention_mask)
        return self.lm_logits(self.decode(decoder_input_ids, encoded, attention_mask, decoder_attention_mask))


def draw_params(cfg: T5Config, key: jax.Array) -> dict:
    """A T5 of ``cfg`` drawn at random, as parameters (a pure dict, as ``nnx.to_pure_dict``
    gives): each array from the normal its constructor declares (``init_normal``: (mean, std),
    transformers' T5 initialisation; a norm's weight is (1, 0)), all cut from one N(0, 1)
    vector. ``T5(cfg, rngs=...)`` draws the same distribution array by array, and its program
    compiles one random kernel per array: the tiny LLM4MAC agent's init program compiled in
    6.4 s that way on a 2-core CPU and in 2.7 s with this, flan-t5-small's draw in 17.5 s and
    6.1 s."""
    abstract = nnx.state(nnx.eval_shape(lambda: T5(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    flat = list(nnx.to_flat_state(abstract))
    sizes = [math.prod(variable.shape) for _, variable in flat]
    noise = jax.random.normal(key, (sum(sizes),), jnp.float32)
    starts = itertools.accumulate(sizes[:-1], initial=0)  # each array's offset in the vector
    values = {}
    for (path, variable), start, size in zip(flat, starts, sizes, strict=True):
        mean, std = variable.get_metadata()["init_normal"]
        values[path] = mean + std * noise[start : start + size].reshape(variable.shape)
    return traverse_util.unflatten_dict(values)
