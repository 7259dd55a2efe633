"""jaxmac's Flax T5 against transformers' PyTorch T5 on a random tiny checkpoint, and its random draw."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from t5_fixtures import TINY_HF, save_random_t5

from jaxmac.env import UDTSEnv
from jaxmac.language import prompt_tokenizer
from jaxmac.models.config import CONFIGS
from jaxmac.models.export import save_t5
from jaxmac.models.loading import load_pretrained_t5, read_tensors, resolve_checkpoint
from jaxmac.models.lora import add_lora, merge_lora
from jaxmac.models.t5 import T5, draw_params

RTOL = 1e-4


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def compiled(fn, model, *arrays):
    """``fn(model, *arrays)`` as one compiled program (eagerly, each operation compiles alone)."""
    return nnx.jit(fn)(model, *(jnp.asarray(a) for a in arrays))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_t5")
    reference = save_random_t5(path)
    return reference, load_pretrained_t5(path), path


def padded_batch(rng, vocab, lengths, width):
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(2, vocab, n)
        ids[i, n - 1] = 1  # </s>
        mask[i, :n] = 1
    return ids, mask


def test_encoder_and_logits_match_pytorch_on_padded_batches(pair):
    reference, model, _ = pair
    rng = np.random.default_rng(0)
    ids, mask = padded_batch(rng, TINY_HF.vocab_size, [5, 17, 30, 1], 30)
    dec_ids, dec_mask = padded_batch(rng, TINY_HF.vocab_size, [4, 6, 1, 6], 6)
    dec_ids[:, 0] = 0  # decoder start
    with torch.no_grad():
        t_enc = reference.encoder(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)
        ).last_hidden_state
        t_logits = reference(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(dec_ids),
            decoder_attention_mask=torch.tensor(dec_mask),
        ).logits
    enc, logits = compiled(
        lambda m, i, k, d, dk: (m.encode(i, k), m(i, k, d, dk)), model, ids, mask, dec_ids, dec_mask
    )
    valid, dec_valid = mask.astype(bool), dec_mask.astype(bool)  # padded positions are unspecified
    assert rel_err(np.asarray(enc)[valid], t_enc.numpy()[valid]) < RTOL
    assert rel_err(np.asarray(logits)[dec_valid], t_logits.numpy()[dec_valid]) < RTOL


def test_long_inputs_use_the_logarithmic_buckets(pair):
    """Positions past max_distance exercise every bucket branch."""
    reference, model, _ = pair
    ids, mask = padded_batch(np.random.default_rng(1), TINY_HF.vocab_size, [60, 41], 60)
    with torch.no_grad():
        t_enc = reference.encoder(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)
        ).last_hidden_state
    enc = np.asarray(compiled(lambda m, i, k: m.encode(i, k), model, ids, mask))
    assert rel_err(enc[mask.astype(bool)], t_enc.numpy()[mask.astype(bool)]) < RTOL


@pytest.mark.parametrize("file_format", ["safetensors", "bin"])
def test_tied_rescaled_head_and_pytorch_bin(tmp_path, file_format):
    """T5 v1.0-style tied, rescaled LM head; and a pytorch_model.bin instead of safetensors."""
    cfg = TINY_HF
    reference = save_random_t5(tmp_path, cfg, seed=3, untie=False, scale_decoder_outputs=True)
    if file_format == "bin":
        from safetensors.torch import load_file

        torch.save(load_file(tmp_path / "model.safetensors"), tmp_path / "pytorch_model.bin")
        (tmp_path / "model.safetensors").unlink()
    model = load_pretrained_t5(tmp_path)
    assert model.lm_head is None and model.cfg.scale_decoder_outputs
    ids, mask = padded_batch(np.random.default_rng(2), cfg.vocab_size, [9, 4], 9)
    dec = np.array([[0, 5, 7], [0, 3, 1]])
    with torch.no_grad():
        t_logits = reference(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(dec),
        ).logits.numpy()
    logits = compiled(lambda m, *inputs: m(*inputs), model, ids, mask, dec)
    assert rel_err(logits, t_logits) < RTOL


def test_an_exported_model_loads_back_and_into_pytorch_with_the_same_logits(pair, tmp_path):
    """``save_t5`` writes what was read: every tensor, the configuration, a tokenizer that
    tokenizes as the original, and transformers' PyTorch T5 reads it to the same logits."""
    reference, model, path = pair
    tokenizer = prompt_tokenizer(UDTSEnv())
    out = save_t5(nnx.to_pure_dict(nnx.split(model)[1]), model.cfg, tokenizer, tmp_path / "export")
    written, read = read_tensors(out), read_tensors(path)
    assert set(written) == set(read) - {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
    assert all(np.array_equal(written[name], read[name]) for name in written)
    assert load_pretrained_t5(out).cfg == model.cfg
    import transformers

    text = "transmit schedule_request"
    assert transformers.AutoTokenizer.from_pretrained(out)(text).input_ids == tokenizer(text).input_ids
    exported = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
    ids, mask = padded_batch(np.random.default_rng(3), TINY_HF.vocab_size, [7, 3], 7)
    dec = torch.tensor([[0, 4, 9], [0, 2, 1]])
    with torch.no_grad():
        logits = [
            m(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), decoder_input_ids=dec).logits
            for m in (exported, reference)
        ]
    np.testing.assert_array_equal(*logits)
    with pytest.raises(FileExistsError, match="exists: an export writes a new directory"):
        save_t5(nnx.to_pure_dict(nnx.split(model)[1]), model.cfg, tokenizer, out)
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging directory left


def test_merged_lora_computes_what_the_adapted_model_does(pair):
    """``merge_lora`` folds each adapted projection into one kernel: the plain T5 it gives
    computes the LoRA model's logits (its B matrices drawn non-zero, as after fine-tuning)."""
    _, model, _ = pair
    adapted = add_lora(nnx.clone(model), rank=2, scale=0.5, rngs=nnx.Rngs(1))
    params = nnx.to_pure_dict(nnx.split(adapted)[1])
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.3 if "lora_b" in jax.tree_util.keystr(path) else x, params
    )
    nnx.update(adapted, params)
    plain = nnx.merge(nnx.graphdef(model), merge_lora(params, 0.5))
    ids, mask = padded_batch(np.random.default_rng(4), TINY_HF.vocab_size, [6, 2], 6)
    dec = np.array([[0, 5, 7], [0, 3, 1]])
    lora_logits, plain_logits = (
        compiled(lambda m, *inputs: m(*inputs), m, ids, mask, dec) for m in (adapted, plain)
    )
    assert rel_err(plain_logits, lora_logits) < RTOL
    assert rel_err(compiled(lambda m, *inputs: m(*inputs), model, ids, mask, dec), lora_logits) > 1e-2


def test_missing_and_misshapen_tensors_are_named(pair, tmp_path):
    from safetensors.numpy import load_file, save_file

    _, _, path = pair
    tensors = load_file(path / "model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    broken = dict(tensors)
    del broken["decoder.block.1.layer.1.EncDecAttention.k.weight"]
    save_file(broken, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"decoder\.block\.1\.layer\.1\.EncDecAttention\.k\.weight.*missing"):
        load_pretrained_t5(tmp_path)
    broken = dict(tensors)
    broken["lm_head.weight"] = broken["lm_head.weight"][:, :-1].copy()
    save_file(broken, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"lm_head\.weight.*shape"):
        load_pretrained_t5(tmp_path)
    broken = {**tensors, "encoder.block.9.layer.0.SelfAttention.q.weight": tensors["lm_head.weight"]}
    save_file(broken, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="unexpected tensors"):
        load_pretrained_t5(tmp_path)


def test_unsupported_config_and_offline_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"feed_forward_proj": "relu"}))
    with pytest.raises(ValueError, match="feed_forward_proj"):
        load_pretrained_t5(tmp_path)
    with pytest.raises(FileNotFoundError, match="huggingface-cli download google/flan-t5-nonexistent"):
        resolve_checkpoint("flan-t5-nonexistent")


def test_bfloat16_compute_keeps_float32_parameters(pair):
    _, _, path = pair
    f32 = load_pretrained_t5(path)
    bf16 = load_pretrained_t5(path, dtype=jnp.bfloat16)
    assert bf16.encoder[0].attention.q.kernel.get_value().dtype == jnp.float32
    ids, mask = padded_batch(np.random.default_rng(4), TINY_HF.vocab_size, [8, 5], 8)
    dec = jnp.array([[0, 4, 9], [0, 7, 1]])
    a, b = (compiled(lambda m, *inputs: m(*inputs), model, ids, mask, dec) for model in (f32, bf16))
    assert b.dtype == jnp.float32 and rel_err(b, a) < 0.05  # bf16 keeps ~3 significant digits


def test_one_vector_draw_gives_every_array_the_constructors_distribution():
    """``draw_params`` cuts one normal vector into the arrays the constructor would draw one by
    one: the same tree, shapes and dtypes, each array at its declared std (norms: ones)."""
    cfg = dataclasses.replace(CONFIGS["tiny"], vocab_size=512, d_ff=256)
    drawn = draw_params(cfg, jax.random.PRNGKey(0))
    built = nnx.to_pure_dict(nnx.split(T5(cfg, rngs=nnx.Rngs(0)))[1])
    assert jax.tree.structure(drawn) == jax.tree.structure(built)
    pairs = zip(jax.tree_util.tree_leaves_with_path(drawn), jax.tree.leaves(built), strict=True)
    for (path, a), b in pairs:
        assert a.shape == b.shape and a.dtype == b.dtype, path
        a, b = np.asarray(a), np.asarray(b)
        if "norm" in jax.tree_util.keystr(path):
            np.testing.assert_array_equal(a, b)  # ones
        else:  # both estimated from n values: within four standard errors of each other
            bound = 4 / np.sqrt(a.size)
            assert abs(a.mean()) < bound * b.std() and abs(a.std() / b.std() - 1) < bound, path
    other = draw_params(cfg, jax.random.PRNGKey(1))
    assert not np.array_equal(other["shared"]["embedding"], drawn["shared"]["embedding"])
