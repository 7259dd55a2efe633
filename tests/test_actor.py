"""The actor-critic: candidate scoring against PyTorch (Lamorel's way), dedup exactness, fusion."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.flatten_util import ravel_pytree
from t5_fixtures import TINY_HF, save_random_t5

from jaxmac.agents.policy import Choices, choices_to_action, fuse
from jaxmac.env import UDTSEnv
from jaxmac.language import AGENTS, PromptCompiler, PromptTemplate, prompt_tokenizer, render_prompt
from jaxmac.models import (
    Candidates,
    CandidateSet,
    CandidateTrie,
    LanguageActorCritic,
    TargetedCandidates,
    act,
    act_distinct,
    load_pretrained_t5,
    load_t5,
)
from jaxmac.models.dedup import group_rows
from jaxmac.models.loading import tiny_config
from jaxmac.protocols import make_protocol
from jaxmac.training import make_agent


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
    """Two agent groups' candidate sets (different sizes and lengths, two candidates sharing a
    two-token prefix) scored in one call over their prefix trees: each prompt's log-probs are
    Lamorel's over its own group's candidates, and its group's padded candidates have none."""
    reference, path = checkpoint
    rng = np.random.default_rng(0)
    p, length = 5, 12
    ids = rng.integers(3, TINY_HF.vocab_size, (p, length))
    mask = np.arange(length)[None] < np.array([12, 7, 3, 12, 9])[:, None]
    ids = np.where(mask, ids, 0)
    model = LanguageActorCritic(load_pretrained_t5(path), rngs=nnx.Rngs(0))
    sets = []
    for lengths in ([3, 1, 4], [2, 3]):
        cand_mask = np.arange(4)[None] < np.array(lengths)[:, None]
        sets.append(
            (np.where(cand_mask, rng.integers(3, TINY_HF.vocab_size, (len(lengths), 4)), 0), cand_mask)
        )
    sets[0][0][2, :2] = sets[0][0][0, :2]
    trie = CandidateTrie.build(
        [CandidateSet(ids=jnp.asarray(i, jnp.int32), mask=jnp.asarray(m)) for i, m in sets], start=0
    )
    # group 0's nodes: the root and the shared prefix's 1st, 2nd and (candidate 2's) 3rd token
    assert trie.node_ids.shape == (2, 4)
    group = np.array([0, 1, 1, 0, 1])
    out = nnx.jit(lambda m, t, g: m(jnp.asarray(ids), jnp.asarray(mask), t, g, raw_logits=raw))(
        model, trie, jnp.asarray(group)
    )
    for g, (cand_ids, cand_mask) in enumerate(sets):
        per_prompt = (np.broadcast_to(x, (p, *x.shape)) for x in (cand_ids, cand_mask.astype(np.float32)))
        scores = lamorel_scores(reference, ids, mask.astype(np.int64), *per_prompt, raw)
        expected = torch.log_softmax(torch.tensor(scores), -1).numpy()
        rows, count = group == g, len(cand_ids)
        np.testing.assert_allclose(out.log_probs[rows, 0, :count], expected[rows], rtol=1e-4, atol=1e-5)
        assert (np.exp(out.log_probs[rows, 0, count:]) == 0).all()
    assert out.value.shape == (p, 1) and np.all(np.asarray(out.entropy) >= 0)


def test_targeted_candidates_score_each_answer_behind_its_prefix(checkpoint):
    """One prompt, T targets: candidate c of target t is teacher-forced behind t's prefix and
    only its own tokens are scored (Lamorel's way on the joined sequence); the critic reads
    the decoder state after the prefix."""
    reference, path = checkpoint
    rng = np.random.default_rng(1)
    ids = rng.integers(3, TINY_HF.vocab_size, (2, 9))
    mask = np.ones(ids.shape, bool)
    heads = [[7], [8, 9]]  # prefixes of different lengths
    answers = [[11, 1], [12, 13, 1], [14, 1]]
    targeted = TargetedCandidates.build(
        ["a", "b c"],
        ["x", "y z", "w"],
        _FakeTokenizer(
            {"a": heads[0], "b c": heads[1], "x": answers[0][:1], "y z": answers[1][:2], "w": answers[2][:1]}
        ),
    )
    model = LanguageActorCritic(load_pretrained_t5(path), value_hidden=8, rngs=nnx.Rngs(0))
    trie = CandidateTrie.build([targeted], start=0)
    out = nnx.jit(lambda m: m(jnp.asarray(ids), jnp.asarray(mask), trie))(model)

    def critic(model, answer, position):  # the value head on the state at ``position``
        encoded = model.t5.encode(jnp.asarray(ids), jnp.asarray(mask))
        hidden, _ = model.t5.teacher_forced(
            answer[None].repeat(2, 0), answer[None].repeat(2, 0) > 0, encoded, mask
        )
        return model.value_head(hidden[:, 0, position])

    assert out.log_probs.shape == (2, 2, 3) and out.value.shape == (2, 2)
    for t, head in enumerate(heads):
        joined = np.asarray(targeted.ids[t])
        assert [list(r[m]) for r, m in zip(joined, np.asarray(targeted.mask[t]), strict=True)] == [
            head + a for a in answers
        ]
        per_prompt = (
            np.broadcast_to(x, (2, *x.shape)) for x in (joined, np.asarray(targeted.scored[t], np.float32))
        )
        scores = lamorel_scores(reference, ids, mask.astype(np.int64), *per_prompt, False)
        expected = torch.log_softmax(torch.tensor(scores), -1).numpy()
        np.testing.assert_allclose(np.asarray(out.log_probs[:, t]), expected, rtol=1e-4, atol=1e-5)
        value = nnx.jit(critic, static_argnums=2)(model, jnp.asarray(joined[:1]), len(head))
        np.testing.assert_allclose(out.value[:, t], value, rtol=1e-5)


class _FakeTokenizer:
    """Token ids by table, with ``</s>`` = 1 appended unless ``add_special_tokens=False``."""

    pad_token_id = 0

    def __init__(self, table):
        self.table = table

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": self.table[text] + ([1] if add_special_tokens else [])}


@pytest.mark.slow
def test_one_bs_prompt_per_tti_decides_for_every_ue_by_its_rank():
    """``bs_target="decoder"``: the BS prompts of a TTI are one text (one distinct prompt per
    episode), and the decision about a UE slot is that prompt's target named by the slot's rank
    among the active UEs (a gap in the slots shifts it)."""
    env = UDTSEnv(max_ues=3)
    agent = make_agent("llm4mac", env, value_hidden=16, bs_target="decoder")
    params = agent.init(jax.random.PRNGKey(0))
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(1), 2), env.default_params
    )
    obs = obs.replace(active=jnp.asarray([[True, False, True], [True, True, True]]))
    prompts = jax.jit(jax.vmap(agent.compiler))(obs)
    assert (prompts.bs_ids == prompts.bs_ids[:, :1]).all()
    text = render_prompt(agent.compiler.template, jax.tree.map(lambda x: x[0], obs), "bs", 0)
    assert "Goal: choose the downlink signal to deliver" in text and "UE 1 sent" in text
    out = jax.jit(agent)(params, obs)
    bs = jnp.ones(2, jnp.int32)  # the BS's group of the agent's trie
    score = jax.jit(lambda p, i, m: nnx.merge(agent.graphdef, p)(i, m, agent.trie, bs))
    direct = score(params, prompts.bs_ids[:, 0], prompts.bs_mask[:, 0])  # (E, T, C)
    for e, slot, rank in ((0, 0, 1), (0, 2, 2), (1, 0, 1), (1, 1, 2), (1, 2, 3)):
        np.testing.assert_allclose(
            out.policy.bs_log_probs[e, slot], direct.log_probs[e, rank - 1, :3], rtol=1e-5, atol=1e-6
        )
    tokenizer = agent.compiler.tokenizer
    joined = tokenizer("UE 2 " + agent.compiler.template.bs_candidates[1])["input_ids"]
    assert list(np.asarray(agent.candidates.bs.ids[1, 1])[: len(joined)]) == joined
    with pytest.raises(ValueError, match=r"bs_target must be one of \('prompt', 'decoder'\), got 'x'"):
        make_agent("llm4mac", env, bs_target="x")
    with pytest.raises(ValueError, match="bs_target='decoder' needs the SIE prompts"):
        make_agent("llm4mac", env, bs_target="decoder", sie=False)


@pytest.fixture(scope="module")
def rollout_batch():
    """Prompts of 16 episodes a few TTIs into contention_free: many repeat."""
    env = UDTSEnv(max_ues=4, buffer_size=5)
    t5, tok = load_t5("tiny", word_tokenizer=lambda: prompt_tokenizer(env))
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

    prompts = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), 16))
    flat = jax.tree.map(lambda x: x.reshape(-1, x.shape[-1]), prompts)  # (16 * M, L) per group
    model = LanguageActorCritic(t5, value_hidden=32, rngs=nnx.Rngs(1))
    candidates = Candidates.build(template.ue_candidates, template.bs_candidates, tok)
    start = t5.cfg.decoder_start_token_id
    tries = {g: CandidateTrie.build([getattr(candidates, g)], start=start) for g in AGENTS}
    return model, flat, {**tries, "both": CandidateTrie.build([candidates.ue, candidates.bs], start=start)}


def _relative_error(a, b):
    diff = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.sum((x - y) ** 2), a, b))
    norm = jax.tree.leaves(jax.tree.map(lambda y: jnp.sum(y**2), b))
    return float(jnp.sqrt(sum(diff) / sum(norm)))


def test_a_checkpoint_head_scale_needs_an_lm_head_of_its_own(tmp_path):
    """Scaling a tied head would scale the encoder's and decoder's input embedding too."""
    env = UDTSEnv(max_ues=2)
    tokenizer = prompt_tokenizer(env)
    save_random_t5(tmp_path, tiny_config(tokenizer), untie=False)
    tokenizer.save_pretrained(tmp_path)
    make_agent("llm4mac", env, model=str(tmp_path))  # kept as it is: no scale to apply
    with pytest.raises(ValueError, match="checkpoint_head_scale needs an LM head of its own"):
        make_agent("llm4mac", env, model=str(tmp_path), checkpoint_head_scale=0.3)


def test_the_tiny_tokenizer_gives_every_candidate_of_a_group_the_same_length():
    """Eq. 9 sums token log-probabilities, so a candidate two tokens longer starts about
    2 ln(vocabulary) lower under an untrained model: the tiny word tokenizer keeps message
    names (``schedule_request``) whole so that signalling is explored at all."""
    agent = make_agent("llm4mac", UDTSEnv(), value_hidden=16)
    for candidates in (agent.candidates.ue, agent.candidates.bs):
        lengths = np.asarray(candidates.mask.sum(-1))
        assert (lengths == lengths[0]).all(), lengths


def test_a_drawn_tiny_model_starts_with_every_decision_spread_over_its_candidates():
    """The untrained policy explores: a drawn T5's logits start at unit scale, so no group's
    decisions start one-hot. (With transformers' N(0, 1) LM head the tiny model's BS decisions
    started at 0.001-0.013 nats of entropy, and PPO never saw another DCM.)"""
    env = UDTSEnv(max_ues=4)
    agent = make_agent("llm4mac", env, value_hidden=16)
    env_params = env.default_params.replace(n_min=2, n_max=4)
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(9), 16), env_params)
    init, decide = jax.jit(agent.init), jax.jit(agent)
    for seed in range(3):
        policy = decide(init(jax.random.PRNGKey(seed)), obs).policy
        for log_probs in (policy.ue_log_probs, policy.bs_log_probs):
            entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
            mean = float(jnp.sum(jnp.where(obs.active, entropy, 0.0)) / jnp.sum(obs.active))
            assert mean > 0.2, (seed, mean)


@pytest.mark.slow
@pytest.mark.parametrize("duplicates", [True, False])
def test_dedup_gives_the_plain_outputs_and_gradient(rollout_batch, duplicates):
    """The chunked, deduplicated forward and backward equal the plain ones (float32 relative
    error 1e-5), with many repeated prompts and with none, over several chunks."""
    model, prompts, tries = rollout_batch
    ids, mask = prompts.ue_ids, prompts.ue_mask
    distinct = int(group_rows(ids)[2])
    assert ids.shape[0] == 64 and distinct <= 32  # half the rows or fewer
    if not duplicates:  # every row made distinct by its last token: nothing repeats
        ids, mask = ids.at[:, -1].set(2 + jnp.arange(64)), mask.at[:, -1].set(True)
        assert int(group_rows(ids)[2]) == 64
    valid = jnp.arange(ids.shape[0]) % 5 != 4  # some rows count as padded slots
    weights = (
        jnp.asarray(np.random.default_rng(0).normal(size=(ids.shape[0], 6)), jnp.float32) * valid[:, None]
    )
    graph, params = nnx.split(model)

    def loss(params, ids, mask, chunk):  # the batch as arguments: both cases run one program
        out = act(nnx.merge(graph, params), ids, mask, tries["ue"], dedup_chunk=chunk, valid=valid)
        return jnp.sum(out.log_probs[:, 0] * weights) + jnp.sum(valid * out.value[:, 0] ** 2), out

    step = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=3)
    results = [step(params, ids, mask, chunk) for chunk in (None, 4)]
    (l_full, out_full), g_full = results[0]
    (l_dedup, out_dedup), g_dedup = results[1]
    rows = np.asarray(valid)
    np.testing.assert_allclose(out_full.log_probs[rows], out_dedup.log_probs[rows], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_full.value[rows], out_dedup.value[rows], rtol=1e-5, atol=1e-6)
    assert np.isfinite(l_full)
    np.testing.assert_allclose(l_full, l_dedup, rtol=1e-5)
    assert _relative_error(g_dedup, g_full) < 1e-5


def test_dedup_gradient_traces_the_model_once_per_shape(rollout_batch, monkeypatch):
    """The backward pass reuses the forward's trace of the model (a trace is Python work paid
    by every compile and every rerun that reloads a program from the cache)."""
    model, prompts, tries = rollout_batch
    traces = []
    call = LanguageActorCritic.__call__
    monkeypatch.setattr(LanguageActorCritic, "__call__", lambda *a, **k: traces.append(1) or call(*a, **k))
    graph, params = nnx.split(model)
    ids, mask = prompts.ue_ids, prompts.ue_mask

    def loss(params):
        out = act_distinct(graph, params, ids, mask, tries["ue"], 3)  # a chunk no other test uses
        return jnp.sum(out.log_probs) + jnp.sum(out.value)

    jax.make_jaxpr(jax.grad(loss))(params)
    assert len(traces) == 1


@pytest.mark.slow
def test_a_detached_value_head_leaves_the_t5_to_the_policy_gradient(rollout_batch):
    """With ``detach_value`` the value loss trains the head alone: its gradient reaches no T5
    weight, the head's own gradient and the policy's gradient are those of the shared critic."""
    model, prompts, tries = rollout_batch
    graph, params = nnx.split(model)
    twin = LanguageActorCritic(model.t5, value_hidden=32, detach_value=True, rngs=nnx.Rngs(1))
    detached = nnx.split(twin)[0]
    ids, mask = prompts.ue_ids[:8], prompts.ue_mask[:8]

    def grads(graphdef):
        """The value term's and the policy term's gradients, in one program (eagerly, every
        operation would compile on its own)."""

        def loss(p, term):
            out = nnx.merge(graphdef, p)(ids, mask, tries["ue"])
            return jnp.sum(out.value**2) if term == "value" else jnp.sum(out.log_probs[:, 0, 0])

        both = jax.jit(lambda p: [jax.grad(loss)(p, term) for term in ("value", "policy")])(params)
        return [nnx.to_pure_dict(g) for g in both]

    (shared, shared_policy), (alone, alone_policy) = grads(graph), grads(detached)
    t5_norm = lambda g: float(np.linalg.norm(ravel_pytree(g["t5"])[0]))  # noqa: E731
    assert t5_norm(shared) > 0 and t5_norm(alone) == 0
    jax.tree.map(np.testing.assert_array_equal, shared["value_head"], alone["value_head"])
    # the same gradient from two programs (XLA may fuse them differently: rounding apart; entries
    # up to about 0.1, and one of 6.7e-4 once differed by 1.2e-7 on this machine's CPU)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
    jax.tree.map(close, shared_policy, alone_policy)


@pytest.mark.parametrize("chunk", [16, 1000])
def test_chunked_dedup_gives_identical_outputs(rollout_batch, chunk):
    """Both agent groups in one deduplicated call, as the agent makes it: the same outputs as
    the plain call, and a prompt in both groups (the same tokens) scored by each group's own
    candidates, never merged into one."""
    model, prompts, tries = rollout_batch
    graph, params = nnx.split(model)
    length = prompts.bs_ids.shape[1]
    pad = lambda x: jnp.pad(x, ((0, 0), (0, length - x.shape[1])))  # noqa: E731
    ids = jnp.concatenate([pad(prompts.ue_ids), prompts.bs_ids, prompts.bs_ids[:4]])
    mask = jnp.concatenate([pad(prompts.ue_mask), prompts.bs_mask, prompts.bs_mask[:4]])
    n = prompts.ue_ids.shape[0]
    group = jnp.concatenate([jnp.zeros(n, jnp.int32), jnp.ones(n, jnp.int32), jnp.zeros(4, jnp.int32)])
    full, dedup = (
        jax.jit(lambda p, i, m, g, k=kw: act(nnx.merge(graph, p), i, m, tries["both"], group=g, **k))(
            params, ids, mask, group
        )
        for kw in ({}, {"dedup_chunk": chunk})
    )
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(dedup))
    np.testing.assert_allclose(full.log_probs, dedup.log_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full.value, dedup.value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full.entropy, dedup.entropy, rtol=1e-5, atol=1e-6)
    as_ue, as_bs = dedup.log_probs[2 * n :], dedup.log_probs[n : n + 4]
    assert (np.exp(as_ue[:, 0, 3:]) > 0).all() and (np.exp(as_bs[:, 0, 3:]) == 0).all()
    with pytest.raises(ValueError, match="dedup_chunk must be an integer >= 1"):
        act(model, ids, mask, tries["both"], dedup_chunk=0)


def test_a_group_outside_the_tries_groups_is_an_error_naming_it(rollout_batch):
    """Indexing the trie would clamp a group index past its last group: a concrete one is refused."""
    model, prompts, tries = rollout_batch
    ids, mask = prompts.ue_ids[:3], prompts.ue_mask[:3]
    with pytest.raises(ValueError, match=r"group must be in \[0, 2\) \(the trie's groups\), got \[0 2 1\]"):
        act(model, ids, mask, tries["both"], group=jnp.asarray([0, 2, 1]))
    with pytest.raises(ValueError, match=r"group must be in \[0, 2\)"):
        act(model, ids, mask, tries["both"], group=np.asarray([0, -1, 1]), dedup_chunk=2)
    with pytest.raises(ValueError, match=r"group must be \(3,\) integers, got int64 \(2,\)"):
        act(model, ids, mask, tries["both"], group=np.asarray([0, 1]))
    with pytest.raises(ValueError, match=r"group must be \(3,\) integers, got float32 \(3,\)"):
        act(model, ids, mask, tries["both"], group=np.zeros(3, np.float32))


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
        action = choices_to_action(Choices(ue=jnp.array([c, 0]), bs=jnp.array([2, 1])), env.ucm_vocab)
        assert (
            f"{('nothing', 'transmit', 'delete')[int(action.ue[0])]} {env.ucm_words[int(action.ucm[0])]}"
            == text
        )
    assert action.dcm.tolist() == [2, 1]


def test_tiny_tokenizer_round_trips_through_auto_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXMAC_CACHE", str(tmp_path))
    _, tok = load_t5("tiny", word_tokenizer=lambda: prompt_tokenizer(UDTSEnv()))
    files = list(tmp_path.rglob("tokenizer.json"))
    assert len(files) == 1
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(files[0].parent)
    text = "<Role> You are UE 2 of 5 in a wireless network."
    assert (
        again(text)["input_ids"] == tok(text)["input_ids"] and tok.unk_token_id not in tok(text)["input_ids"]
    )
