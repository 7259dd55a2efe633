"""T5 v1.1 / Flan-T5 configurations (docs/SPEC.md §3)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Shapes of a T5 v1.1 encoder-decoder; field names follow ``transformers.T5Config``."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64  # per-head dimension
    d_ff: int = 1024
    num_layers: int = 8  # encoder blocks
    num_decoder_layers: int = 8
    num_heads: int = 6
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    tie_word_embeddings: bool = False  # LM head = shared embedding (Flan-T5 / T5 v1.1: untied)
    scale_decoder_outputs: bool = False  # multiply decoder states by d_model**-0.5 (T5 v1.0 only)
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or value < (0 if "token" in f.name else 1)):
                raise ValueError(f"T5Config.{f.name} must be a positive integer, got {value!r}")

    @staticmethod
    def check_supported(hf: dict[str, Any]) -> None:
        """Raise if a Hugging Face config describes a T5 this implementation does not have."""
        proj = hf.get("feed_forward_proj", "relu")
        if proj != "gated-gelu":
            raise ValueError(f"feed_forward_proj must be 'gated-gelu' (T5 v1.1 / Flan-T5), got {proj!r}")

    @classmethod
    def from_hf(cls, hf: dict[str, Any], has_lm_head: bool) -> T5Config:
        """From a Hugging Face ``config.json`` dict and whether the checkpoint holds its own
        ``lm_head.weight``. transformers 4 wrote ``tie_word_embeddings: false`` for T5 v1.1 and
        used it to mean "do not rescale"; transformers 5 always ties and writes
        ``scale_decoder_outputs`` instead. Both kinds of checkpoint load the same model."""
        cls.check_supported(hf)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in hf.items() if k in names}
        values.setdefault("num_decoder_layers", hf.get("num_layers", cls.num_layers))
        values["tie_word_embeddings"] = not has_lm_head
        values["scale_decoder_outputs"] = hf.get(
            "scale_decoder_outputs", hf.get("tie_word_embeddings") is not False
        )
        return cls(**values)

    def hf_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of a ``transformers.T5Config`` (version 5) of the same model. That
        version always ties the LM head and reads ``tie_word_embeddings`` as "rescale the decoder
        output", so an untied head has to be given its own weights after construction."""
        shapes = (
            "vocab_size",
            "d_model",
            "d_kv",
            "d_ff",
            "num_layers",
            "num_decoder_layers",
            "num_heads",
            "relative_attention_num_buckets",
            "relative_attention_max_distance",
            "layer_norm_epsilon",
        )
        return {
            **{k: getattr(self, k) for k in shapes},
            "feed_forward_proj": "gated-gelu",
            "dropout_rate": 0.0,
            "tie_word_embeddings": self.scale_decoder_outputs,
        }


#: Compute dtypes of the T5 by name (``compute_dtype``); parameters stay float32.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> Any:
    """The T5's compute dtype ``name``: ``auto`` is bfloat16 on GPU and TPU (their matrix units'
    type) and float32 on CPU (where bfloat16 is emulated, slower and less exact)."""
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {['auto', *DTYPES]}, got {name!r}")
    return DTYPES[name]


#: Named configurations: the three Flan-T5 sizes and a tiny one for tests and CPU demos.
CONFIGS: dict[str, T5Config] = {
    "flan-t5-small": T5Config(
        d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6
    ),
    "flan-t5-base": T5Config(
        d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12
    ),
    "flan-t5-large": T5Config(
        d_model=1024, d_kv=64, d_ff=2816, num_layers=24, num_decoder_layers=24, num_heads=16
    ),
    "tiny": T5Config(
        vocab_size=256,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_max_distance=64,
    ),
}
