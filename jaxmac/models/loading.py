"""Load a Hugging Face T5 v1.1 / Flan-T5 checkpoint into ``jaxmac.models.T5``.

A checkpoint is a directory with ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``, or ``pytorch_model.bin``), found by path or, by repository
name, in the local Hugging Face cache. Nothing is downloaded here: on a machine without the
weights the error says how to get them. Every parameter of the model must come from the
checkpoint with the right shape; a missing, misshapen or unexpected tensor is an error, so
nothing is ever left randomly initialised.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmac.models.config import CONFIGS, T5Config
from jaxmac.models.t5 import T5, Attention, GatedGeluFF, draw_params

#: Tensors that duplicate ``shared.weight`` in transformers' checkpoints.
DUPLICATES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint directory: ``name_or_path`` itself, or its snapshot in the local HF cache
    (``flan-t5-base`` is read as ``google/flan-t5-base``)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a T5 checkpoint: it has no config.json")
        return path
    repo = str(name_or_path)
    if repo.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"no checkpoint directory at {path}")
    if "/" not in repo:
        repo = f"google/{repo}"
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception as e:  # huggingface_hub raises several types for "not in the cache"
        raise FileNotFoundError(
            f"no local checkpoint for {name_or_path!r} (looked for a directory and for {repo} in the "
            f"Hugging Face cache; nothing is downloaded here). On a machine with internet run "
            f"`huggingface-cli download {repo}` (or `save_pretrained` it) and copy the directory or the "
            f"cache (~/.cache/huggingface) here, then pass the directory's path."
        ) from e


def read_tensors(checkpoint: Path) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint directory as float32 NumPy arrays, by transformers' names."""
    single, index, torch_bin = (
        checkpoint / n for n in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    )
    if single.is_file() or index.is_file():
        from safetensors.numpy import load_file

        files = (
            [single]
            if single.is_file()
            else sorted({checkpoint / f for f in json.loads(index.read_text())["weight_map"].values()})
        )
        tensors = {k: v for f in files for k, v in load_file(f).items()}
    elif torch_bin.is_file():
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"{torch_bin} is a PyTorch file: install torch to read it, or convert it to model.safetensors"
            ) from e
        state = torch.load(torch_bin, map_location="cpu", weights_only=True)
        tensors = {k: v.float().numpy() for k, v in state.items()}
    else:
        raise FileNotFoundError(
            f"{checkpoint} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin"
        )
    return {k: np.asarray(v, np.float32) for k, v in tensors.items()}


def _attention(prefix: str, attention: Attention) -> Iterator[tuple[str, nnx.Param, bool]]:
    for name in ("q", "k", "v", "o"):
        yield f"{prefix}{name}.weight", getattr(attention, name).kernel, True
    if attention.relative_attention_bias is not None:
        yield f"{prefix}relative_attention_bias.weight", attention.relative_attention_bias.embedding, False


def _ff(prefix: str, ff: GatedGeluFF) -> Iterator[tuple[str, nnx.Param, bool]]:
    for name in ("wi_0", "wi_1", "wo"):
        yield f"{prefix}{name}.weight", getattr(ff, name).kernel, True


def parameter_names(model: T5) -> Iterator[tuple[str, nnx.Param, bool]]:
    """(transformers name, our parameter, whether the tensor is a transposed Linear weight)."""
    yield "shared.weight", model.shared.embedding, False
    for i, block in enumerate(model.encoder):
        p = f"encoder.block.{i}.layer."
        yield from _attention(p + "0.SelfAttention.", block.attention)
        yield p + "0.layer_norm.weight", block.attention_norm.weight, False
        yield from _ff(p + "1.DenseReluDense.", block.ff)
        yield p + "1.layer_norm.weight", block.ff_norm.weight, False
    yield "encoder.final_layer_norm.weight", model.encoder_norm.weight, False
    for i, block in enumerate(model.decoder):
        p = f"decoder.block.{i}.layer."
        yield from _attention(p + "0.SelfAttention.", block.self_attention)
        yield p + "0.layer_norm.weight", block.self_attention_norm.weight, False
        yield from _attention(p + "1.EncDecAttention.", block.cross_attention)
        yield p + "1.layer_norm.weight", block.cross_attention_norm.weight, False
        yield from _ff(p + "2.DenseReluDense.", block.ff)
        yield p + "2.layer_norm.weight", block.ff_norm.weight, False
    yield "decoder.final_layer_norm.weight", model.decoder_norm.weight, False
    if model.lm_head is not None:
        yield "lm_head.weight", model.lm_head.kernel, True


def load_weights(model: T5, tensors: dict[str, np.ndarray], source: str) -> T5:
    """Fill every parameter of ``model`` from ``tensors``; raise on anything missing or extra."""
    unused = set(tensors) - set(DUPLICATES)
    for name, param, transpose in parameter_names(model):
        if name not in tensors:
            raise ValueError(f"{source}: tensor {name!r} is missing from the checkpoint")
        value = tensors[name].T if transpose else tensors[name]
        if value.shape != param.get_value().shape:
            raise ValueError(
                f"{source}: tensor {name!r} has shape {tensors[name].shape}, the model needs "
                f"{param.get_value().shape[::-1] if transpose else param.get_value().shape}"
            )
        param.set_value(jnp.asarray(value, jnp.float32))
        unused.discard(name)
    if unused:
        raise ValueError(f"{source}: unexpected tensors the model has no place for: {sorted(unused)[:5]}")
    return model


def load_pretrained_t5(checkpoint: Path, dtype: jnp.dtype = jnp.float32) -> T5:
    """The checkpoint's model with its weights (built abstractly first: no random init cost).
    The LM head is untied exactly when the checkpoint holds ``lm_head.weight``."""
    hf = json.loads((checkpoint / "config.json").read_text())
    T5Config.check_supported(hf)  # before reading gigabytes
    tensors = read_tensors(checkpoint)
    cfg = T5Config.from_hf(hf, "lm_head.weight" in tensors)
    model = nnx.eval_shape(lambda: T5(cfg, dtype=dtype, rngs=nnx.Rngs(0)))
    return load_weights(model, tensors, str(checkpoint))


def tiny_config(tokenizer: Any) -> T5Config:
    """The ``tiny`` shape with a vocabulary fitting ``tokenizer`` (rounded up to a multiple of 8)."""
    return dataclasses.replace(CONFIGS["tiny"], vocab_size=-(-len(tokenizer) // 8) * 8)


def random_t5(cfg: T5Config, dtype: jnp.dtype, seed: int) -> T5:
    """A randomly initialised T5 (``draw_params`` from ``PRNGKey(seed)``, in one compiled
    program: eagerly each parameter's initialiser would compile on its own)."""
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: T5(cfg, dtype=dtype, rngs=nnx.Rngs(0))))
    params = jax.jit(draw_params, static_argnums=0)(cfg, jax.random.PRNGKey(seed))
    return nnx.merge(graphdef, params)


def load_t5(
    name_or_path: str | Path,
    *,
    word_tokenizer: Callable[[], Any] | None = None,
    pretrained: bool = True,
    dtype: jnp.dtype = jnp.float32,
    seed: int = 0,
    draw: bool = True,
) -> tuple[T5, Any]:
    """``(model, tokenizer)`` for a named configuration or a checkpoint.

    * ``"tiny"``: random weights, and the tokenizer ``word_tokenizer()`` builds (for LLM4MAC,
      ``jaxmac.language.prompt_tokenizer``: the words of the prompts; no files needed).
    * ``"flan-t5-small"`` / ``"-base"`` / ``"-large"`` or a path: the checkpoint from the path or the
      local HF cache, with its tokenizer. ``pretrained=False`` keeps the shapes but draws random
      weights (the paper's Abl. PK); a named size then runs without any files, with the word
      tokenizer, if no checkpoint is found.

    ``draw=False``: a model without checkpoint weights comes back abstract (its parameters'
    shapes and dtypes, ``nnx.eval_shape``), for a caller that draws the parameters itself (the
    agents' ``init``): drawing them here would compile an initialiser (6.7 s for ``tiny`` on a
    2-core CPU, minutes for flan-t5-base on a GPU) whose values are thrown away.
    """
    name = str(name_or_path)
    if name == "tiny" or (name in CONFIGS and not pretrained and not _cached(name)):
        if word_tokenizer is None:
            raise ValueError(f"model {name!r} has no checkpoint tokenizer here: pass word_tokenizer")
        tokenizer = word_tokenizer()
        cfg = tiny_config(tokenizer) if name == "tiny" else CONFIGS[name]
        return _random_or_abstract(cfg, dtype, seed, draw), tokenizer
    checkpoint = resolve_checkpoint(name_or_path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if pretrained:
        return load_pretrained_t5(checkpoint, dtype), tokenizer
    hf = json.loads((checkpoint / "config.json").read_text())
    cfg = T5Config.from_hf(hf, has_lm_head=not hf.get("tie_word_embeddings", True))
    return _random_or_abstract(cfg, dtype, seed, draw), tokenizer


def _random_or_abstract(cfg: T5Config, dtype: jnp.dtype, seed: int, draw: bool) -> T5:
    if draw:
        return random_t5(cfg, dtype, seed)
    return nnx.eval_shape(lambda: T5(cfg, dtype=dtype, rngs=nnx.Rngs(seed)))


def _cached(name: str) -> bool:
    try:
        resolve_checkpoint(name)
    except FileNotFoundError:
        return False
    return True
