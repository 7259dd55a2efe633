"""The actor-critic: candidate scoring against PyTorch (Lamorel's way), dedup exactness, fusion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from t5_fixtures import TINY_HF, save_random_t5

from jaxmac.env import UDTSEnv
from jaxmac.language import PromptCompiler, PromptTemplate
from jaxmac.models import (
    Candidates,
    LanguageActorCritic,
    act,
    choices_to_action,
    fuse,
    load_pretrained_t5,
    load_t5,
)
from jaxmac.models.dedup import group_rows
from jaxmac.protocols import make_protocol


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("actor_t5")
    return save_random_t5(path, seed=5), path


def lamorel_scores(reference, ids, mask, cand_ids, cand_mask, raw):
    """Encode once, run the decoder over every candidate, sum the candidates' token log-probs."""
    p, c, length = cand_ids.shape
    with torch.no_grad():
        enc = reference.encoder(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)
        ).last_hidden_state
        dec_in = np.concatenate([np.zeros((p, c, 1), np.int64), cand_ids[..., :-1]], -1).reshape(
            p * c, length
        )
        out = reference(
            encoder_outputs=(enc.repeat_interleave(c, 0),),
            attention_mask=torch.tensor(mask).repeat_interleave(c, 0),
            decoder_input_ids=torch.tensor(dec_in),
        ).logits
        scores = out if raw else torch.log_softmax(out, -1)
        token = torch.gather(scores, -1, torch.tensor(cand_ids.reshape(p * c, length))[..., None])[..., 0]
        return (token * torch.tensor(cand_mask.reshape(p * c, length))).sum(-1).reshape(p, c).numpy()


@pytest.mark.parametrize("raw", [False, True])
def test_candidate_log_probs_match_lamorel_scoring(checkpoint, raw):
    reference, path = checkpoint
    rng = np.random.default_rng(0)
    p, length = 5, 12
    ids = rng.integers(3, TINY_HF.vocab_size, (p, length))
    mask = np.arange(length)[None] < np.array([12, 7, 3, 12, 9])[:, None]
    ids = np.where(mask, ids, 0)
    lengths = np.array([[3, 2, 4], [1, 3, 2]])  # agent 0 has 3 candidates, agent 1 has 2 (third invalid)
    cand_ids = rng.integers(3, TINY_HF.vocab_size, (2, 3, 4))
    cand_mask = np.arange(4)[None, None] < lengths[..., None]
    candidates = Candidates(
        ids=jnp.asarray(np.where(cand_mask, cand_ids, 0), jnp.int32),
        mask=jnp.asarray(cand_mask),
        valid=jnp.asarray([[True, True, True], [True, True, False]]),
    )
    agent = np.array([0, 1, 0, 1, 1])
    model = LanguageActorCritic(load_pretrained_t5(path), rngs=nnx.Rngs(0))
    out = model(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(agent), candidates, raw_logits=raw)
    scores = lamorel_scores(
        reference,
        ids,
        mask.astype(np.int64),
        np.asarray(candidates.ids)[agent],
        cand_mask[agent].astype(np.float32),
        raw,
    )
    valid = np.asarray(candidates.valid)[agent]
    expected = torch.log_softmax(torch.tensor(np.where(valid, scores, -np.inf)), -1).numpy()
    got = np.asarray(out.log_probs)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-4, atol=1e-5)
    assert np.all(np.isneginf(got[~valid]))
    assert out.value.shape == (p,) and np.all(np.asarray(out.entropy) >= 0)


@pytest.fixture(scope="module")
def rollout_batch():
    """Prompts of 32 episodes a few TTIs into contention_free: many repeat."""
    env = UDTSEnv(max_ues=4, buffer_size=5)
    t5, tok = load_t5("tiny", env=env)
    template = PromptTemplate(env)
    compiler = PromptCompiler(template, tok)
    params = env.default_params.replace(n_min=1, n_max=4)
    policy = make_protocol("contention_free", env)

    def episode(key):
        obs, state = env.reset(key, params)
        for t in range(3):
            obs, state, *_ = env.step(
                jax.random.fold_in(key, t), state, policy(key, obs, state, params), params
            )
        return compiler(obs)

    prompts = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), 32))
    e, rows, length = prompts.ids.shape
    agent = jnp.tile(jnp.repeat(jnp.arange(2), env.max_ues), e)
    model = LanguageActorCritic(t5, value_hidden=32, rngs=nnx.Rngs(1))
    return (
        model,
        prompts.ids.reshape(e * rows, length),
        prompts.mask.reshape(e * rows, length),
        agent,
        Candidates.build(template, tok),
    )


@pytest.mark.parametrize("capacity", [256, 8])  # 8 < distinct rows: the exact fallback runs
def test_dedup_gives_identical_outputs_and_gradients(rollout_batch, capacity):
    model, ids, mask, agent, candidates = rollout_batch
    _, _, distinct = group_rows(jnp.concatenate([agent[:, None], ids], axis=1), capacity)
    assert 8 < int(distinct) <= 256 and ids.shape[0] == 256  # so both paths are exercised
    graph, params = nnx.split(model)

    def loss(params, dedup):
        out = act(
            nnx.merge(graph, params), ids, mask, agent, candidates, dedup_capacity=capacity if dedup else None
        )
        return jnp.sum(jnp.where(jnp.isfinite(out.log_probs), out.log_probs, 0.0) * 0.3) + jnp.sum(
            out.value**2
        ), out

    (l_full, out_full), g_full = jax.jit(jax.value_and_grad(lambda p: loss(p, False), has_aux=True))(params)
    (l_dedup, out_dedup), g_dedup = jax.jit(jax.value_and_grad(lambda p: loss(p, True), has_aux=True))(params)
    np.testing.assert_allclose(out_full.log_probs, out_dedup.log_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_full.value, out_dedup.value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l_full, l_dedup, rtol=1e-5)
    # equal up to float32 re-association (repeated rows' gradients are summed in another order)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4 * float(jnp.abs(b).max()) + 1e-7),
        g_full,
        g_dedup,
    )


def test_fusion_is_the_weighted_mean_over_active_agents():
    values = jnp.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])  # UE0 UE1 UE2 | BS->UE0 BS->UE1 BS->UE2
    active = jnp.array([True, False, True])
    assert float(fuse(values, active)) == pytest.approx((1 + 3 + 10 + 30) / 4)
    consensus = jnp.array([2.0, 1, 1, 1, 1, 1])
    assert float(fuse(values, active, consensus)) == pytest.approx((2 + 3 + 10 + 30) / 5)


def test_choice_decoding_follows_the_candidate_order():
    env = UDTSEnv(max_ues=2)
    template = PromptTemplate(env)
    for c, text in enumerate(template.ue_candidates):
        action = choices_to_action(jnp.array([c, 0, 2, 1]), env.ucm_vocab)
        assert (
            f"{('nothing', 'transmit', 'delete')[int(action.ue[0])]} {env.ucm_words[int(action.ucm[0])]}"
            == text
        )
    assert action.dcm.tolist() == [2, 1]


def test_tiny_tokenizer_round_trips_through_auto_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXMAC_CACHE", str(tmp_path))
    _, tok = load_t5("tiny")
    files = list(tmp_path.rglob("tokenizer.json"))
    assert len(files) == 1
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(files[0].parent)
    text = "<Role> You are UE 2 of 5 in a wireless network."
    assert (
        again(text)["input_ids"] == tok(text)["input_ids"] and tok.unk_token_id not in tok(text)["input_ids"]
    )
