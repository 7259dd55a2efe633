"""Generation with the key/value cache: equal to generation without it, to transformers'
greedy ``generate``, and constrained decoding that only writes allowed answers."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from t5_fixtures import TINY_HF, save_random_t5

from jaxmac.models import T5
from jaxmac.models.generate import decode_step, generate, init_cache
from jaxmac.models.loading import load_pretrained_t5

LENGTH = 7


def prompts(seed: int, lengths: list[int], width: int, vocab: int) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), width), np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(2, vocab, n)
        ids[i, n - 1] = 1  # </s>
    return jnp.asarray(ids), jnp.asarray(ids > 0)


def uncached_greedy(t5: T5, ids: jax.Array, mask: jax.Array, length: int) -> np.ndarray:
    """Step by step without a cache: the whole answer so far through the decoder every step."""
    graphdef, state = nnx.split(t5)
    whole = jax.jit(lambda state, decoder: nnx.merge(graphdef, state)(ids, mask, decoder)[:, -1])
    out = np.zeros((ids.shape[0], length), np.int32)
    decoder = np.zeros((ids.shape[0], 1), np.int32)  # the decoder start token
    done = np.zeros(ids.shape[0], bool)
    for t in range(length):
        logits = whole(state, jnp.asarray(decoder))
        token = np.where(done, 0, np.asarray(jnp.argmax(logits, -1)))
        out[:, t] = token
        done |= token == 1
        decoder = np.concatenate([decoder, token[:, None]], axis=1)
    return out


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_t5_generate")
    # equal encoder and decoder depths: transformers' generation cache assumes them
    reference = save_random_t5(path, dataclasses.replace(TINY_HF, num_decoder_layers=2), seed=3)
    t5 = load_pretrained_t5(path)
    # </s> takes the output weights of a token random greedy answers repeat, so some answers end
    with torch.no_grad():
        reference.lm_head.weight[1] = 1.02 * reference.lm_head.weight[42]
    t5.lm_head.kernel[...] = t5.lm_head.kernel[...].at[:, 1].set(1.02 * t5.lm_head.kernel[:, 42])
    return reference, t5


def test_each_cached_step_gives_the_logits_of_the_whole_decoder():
    t5 = T5(TINY_HF, rngs=nnx.Rngs(0))
    ids, mask = prompts(0, [5, 12, 1], 12, TINY_HF.vocab_size)
    answer = jnp.asarray(np.random.default_rng(1).integers(2, TINY_HF.vocab_size, (3, LENGTH)), jnp.int32)
    decoder = jnp.concatenate([jnp.zeros((3, 1), jnp.int32), answer[:, :-1]], axis=1)
    full = jax.jit(lambda: t5(ids, mask, decoder))()  # (3, LENGTH, V)
    cache = jax.jit(lambda: init_cache(t5, t5.encode(ids, mask), LENGTH))()
    step = jax.jit(lambda cache, token, t: decode_step(t5, cache, token, t, mask))
    for t in range(LENGTH):
        logits, cache = step(cache, decoder[:, t], jnp.int32(t))
        np.testing.assert_allclose(logits, full[:, t], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_cached_generation_equals_step_by_step_generation_without_the_cache():
    t5 = T5(TINY_HF, rngs=nnx.Rngs(1))
    ids, mask = prompts(2, [4, 9, 15, 2, 15], 15, TINY_HF.vocab_size)
    cached = jax.jit(lambda i, m: generate(t5, i, m, LENGTH).ids)(ids, mask)
    np.testing.assert_array_equal(cached, uncached_greedy(t5, ids, mask, LENGTH))


def test_greedy_generation_equals_transformers_generate(hf_pair):
    reference, t5 = hf_pair
    ids, mask = prompts(4, [3, 8, 14, 20, 6, 11, 20, 5], 20, TINY_HF.vocab_size)
    ours = np.asarray(jax.jit(lambda: generate(t5, ids, mask, 12).ids)())
    with torch.no_grad():
        theirs = reference.generate(
            input_ids=torch.tensor(np.asarray(ids), dtype=torch.long),
            attention_mask=torch.tensor(np.asarray(mask), dtype=torch.long),
            do_sample=False,
            num_beams=1,
            max_new_tokens=12,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        ).numpy()[:, 1:]  # without the decoder start token
    theirs = np.pad(theirs, ((0, 0), (0, 12 - theirs.shape[1])))  # every answer ended early
    np.testing.assert_array_equal(ours, theirs)
    assert (ours == 1).any(), "no answer ended with </s>: the test would not check the stop"


def test_constrained_decoding_writes_only_allowed_answers_and_sampling_follows_the_key():
    t5 = T5(TINY_HF, rngs=nnx.Rngs(2))
    ids, mask = prompts(5, [6] * 64, 6, TINY_HF.vocab_size)
    allowed = jnp.asarray([[7, 9, 1, 0], [7, 1, 0, 0], [30, 31, 32, 1]], jnp.int32)
    run = jax.jit(lambda key: generate(t5, ids, mask, 6, key=key, temperature=2.0, allowed=allowed))
    out = run(jax.random.PRNGKey(0))
    rows = {tuple(r) for r in np.asarray(out.ids)}
    assert rows <= {(7, 9, 1, 0, 0, 0), (7, 1, 0, 0, 0, 0), (30, 31, 32, 1, 0, 0)}
    assert len(rows) == 3  # at temperature 2 every allowed answer is drawn from 64 prompts
    np.testing.assert_array_equal(run(jax.random.PRNGKey(0)).ids, out.ids)
    assert not np.array_equal(run(jax.random.PRNGKey(1)).ids, out.ids)
    assert np.all(np.asarray(out.log_prob) < 0)
    with pytest.raises(ValueError, match="length must be >= the allowed answers' length 4"):
        generate(t5, ids, mask, 3, allowed=allowed)
