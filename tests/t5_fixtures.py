"""Random tiny transformers T5 checkpoints made by the tests themselves (no downloads)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import transformers

from jaxmac.models.config import T5Config

TINY_HF = T5Config(
    vocab_size=97,
    d_model=32,
    d_kv=8,
    d_ff=48,
    num_layers=2,
    num_decoder_layers=3,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,
)


def save_random_t5(
    directory: Path,
    cfg: T5Config = TINY_HF,
    seed: int = 0,
    untie: bool = True,
    scale_decoder_outputs: bool = False,
) -> transformers.T5ForConditionalGeneration:
    """A random ``T5ForConditionalGeneration`` of ``cfg`` saved to ``directory``; returns it (eval mode).

    transformers 5 always ties the LM head to the embedding and saves no ``lm_head.weight``;
    ``untie`` gives the head its own weights and writes them, as Flan-T5's checkpoints have.
    """
    torch.manual_seed(seed)
    cfg = dataclasses.replace(cfg, scale_decoder_outputs=scale_decoder_outputs)
    hf_cfg = transformers.T5Config(**cfg.hf_kwargs())
    model = transformers.T5ForConditionalGeneration(hf_cfg)
    with torch.no_grad():  # break the default init's symmetries so every tensor matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        if untie:
            model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
    model.eval()
    model.save_pretrained(directory)
    if untie:
        from safetensors.torch import load_file, save_file

        tensors = load_file(directory / "model.safetensors")
        tensors["lm_head.weight"] = model.lm_head.weight.detach().clone()
        save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    return model
