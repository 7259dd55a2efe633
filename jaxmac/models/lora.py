"""Low-rank adaptation (Hu et al. 2021) of the T5's attention projections, with ``flax.nnx.LoRA``.

``add_lora`` wraps every attention projection (q, k, v, o of the encoder's self-attention and
the decoder's self- and cross-attention) so that it computes ``base(x) + scale * x A B``, A
(in, rank) drawn at random and B (rank, out) zero at the start, so the adapted model starts as
the base model. Fine-tuning then trains the LoRA parameters alone (``is_lora``), as the
authors fine-tuned their LLM-PT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

from jaxmac.models.t5 import T5, Attention

PROJECTIONS = ("q", "k", "v", "o")


class LoRALinear(nnx.Module):
    """``base(x) + scale * lora(x)``: a frozen projection plus its low-rank update."""

    def __init__(self, base: nnx.Linear, rank: int, scale: float, rngs: nnx.Rngs) -> None:
        self.base = base
        self.lora = nnx.LoRA(base.in_features, rank, base.out_features, dtype=base.dtype, rngs=rngs)
        self.scale = scale

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.base(x) + self.scale * self.lora(x)


def _attentions(t5: T5) -> list[Attention]:
    encoder = [block.attention for block in t5.encoder]
    decoder = [a for block in t5.decoder for a in (block.self_attention, block.cross_attention)]
    return encoder + decoder


def add_lora(t5: T5, rank: int, scale: float, rngs: nnx.Rngs) -> T5:
    """``t5`` with every attention projection wrapped in a ``LoRALinear`` (in place; returned)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"lora_rank must be an integer >= 1, got {rank!r}")
    for attention in _attentions(t5):
        for name in PROJECTIONS:
            setattr(attention, name, LoRALinear(getattr(attention, name), rank, scale, rngs))
    return t5


def is_lora(path: Sequence[str]) -> bool:
    """Whether the parameter at ``path`` (its names in the parameter tree) is a LoRA matrix."""
    return "lora" in path


def merge_lora(params: Any, scale: float) -> Any:
    """A LoRA-adapted T5's parameters (a pure dict) with every adapted projection folded into
    one kernel, ``W + scale * A B``: the plain T5's parameters, computing the same function."""
    if not isinstance(params, dict):
        return params
    if set(params) == {"base", "lora"}:
        base, lora = params["base"], params["lora"]
        return {**base, "kernel": base["kernel"] + scale * lora["lora_a"] @ lora["lora_b"]}
    return {name: merge_lora(value, scale) for name, value in params.items()}
