"""Write a T5 as a Hugging Face checkpoint directory: what ``load_t5`` and transformers read.

The directory holds ``config.json`` (a ``transformers.T5Config``), ``model.safetensors`` (the
tensors under transformers' names, ``loading.parameter_names``) and the tokenizer's files, so a
trained model can start another run (``jaxmac train --model DIR``: LLM4MAC's PPO from an LLM-PT
run's model, for instance) or be read by transformers' PyTorch T5.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from jaxmac.atomic import plain_mode
from jaxmac.models.config import T5Config
from jaxmac.models.loading import parameter_names
from jaxmac.models.t5 import T5


def t5_tensors(params: dict, cfg: T5Config) -> dict[str, np.ndarray]:
    """A T5's parameters (a pure dict, as ``nnx.to_pure_dict`` gives) as float32 NumPy tensors
    by transformers' names, Linear kernels transposed to PyTorch's (out, in)."""
    model = nnx.merge(nnx.graphdef(nnx.eval_shape(lambda: T5(cfg, rngs=nnx.Rngs(0)))), params)
    tensors = {}
    for name, param, transpose in parameter_names(model):
        value = np.asarray(param.get_value(), np.float32)
        tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    return tensors


def save_t5(params: dict, cfg: T5Config, tokenizer: Any, directory: Path) -> Path:
    """Write the checkpoint directory ``directory`` (which must not exist yet) at once: the
    files go to a temporary directory beside it, renamed when complete, so an interrupted
    export leaves nothing that looks like a checkpoint. Returns ``directory``."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists: an export writes a new directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        hf = {
            "model_type": "t5",
            "architectures": ["T5ForConditionalGeneration"],
            **cfg.hf_kwargs(),
            "scale_decoder_outputs": cfg.scale_decoder_outputs,
            "is_encoder_decoder": True,
            "pad_token_id": cfg.pad_token_id,
            "eos_token_id": cfg.eos_token_id,
            "decoder_start_token_id": cfg.decoder_start_token_id,
        }
        (staging / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
        save_file(t5_tensors(params, cfg), str(staging / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        for path in (staging, *staging.iterdir()):  # a plain mkdir's and open's permissions
            path.chmod(plain_mode(path.is_dir()))
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory
