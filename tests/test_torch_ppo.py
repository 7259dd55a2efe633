"""experiments/torch_ppo.py (the PyTorch, Lamorel-style PPO reference of the training benchmark)
computes jaxmac's PPO loss and gradient on the same minibatch and weights."""

import copy
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from t5_fixtures import save_random_t5

from jaxmac.agents import Choices, LLMAgent
from jaxmac.algorithms import Batch, HParams, normalize, ppo_objective
from jaxmac.env import UDTSEnv
from jaxmac.language import prompt_tokenizer
from jaxmac.models import tiny_config
from jaxmac.protocols import make_protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from torch_ppo import TorchBatch, TorchPPO, build_torch, load_into_torch, value_head  # noqa: E402

#: its module fixture builds and runs both models for about 20 s: the whole module counts as slow
pytestmark = pytest.mark.slow

ENV = UDTSEnv(max_ues=3, episode_len=4)
ENV_PARAMS = ENV.default_params.replace(n_min=1, n_max=3)
EPISODES, TTIS = 4, 2  # 8 transitions
HP = dict(lr=1e-3, clip_eps=0.2, vf_coef=0.5, ent_coef=0.05, kl_coef=0.1, max_grad_norm=0.5)
#: XLA flags that cut this test's compile time (what it compiles runs once, on tiny shapes)
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TERMS = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl")


def observations(key):
    """(EPISODES * TTIS, ...) observations of random-protocol episodes with 1-3 UEs."""
    protocol = make_protocol("random", ENV)

    def episode(key):
        obs, state = ENV.reset(key, ENV_PARAMS)

        def tti(carry, k):
            obs, state = carry
            act_key, step_key = jax.random.split(k)
            action = protocol(act_key, obs, state, ENV_PARAMS)
            next_obs, state, *_ = ENV.step(step_key, state, action, ENV_PARAMS)
            return (next_obs, state), obs

        return jax.lax.scan(tti, (obs, state), jax.random.split(key, TTIS))[1]

    obs = jax.jit(jax.vmap(episode))(jax.random.split(key, EPISODES))
    return jax.tree.map(lambda x: x.reshape(EPISODES * TTIS, *x.shape[2:]), obs)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's matrices are far too small for intra-op threads; on a busy 2-core machine
    they spin against the other process and make every torch op ~100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_t5")
    tokenizer = prompt_tokenizer(ENV)
    model = save_random_t5(directory, tiny_config(tokenizer), seed=0, untie=True)  # untied, as Flan-T5
    tokenizer.save_pretrained(directory)
    agent = LLMAgent.build(ENV, model=str(directory), pretrained=True, value_hidden=16)
    assert not agent.cfg.tie_word_embeddings and not agent.cfg.scale_decoder_outputs
    params = agent.init(jax.random.PRNGKey(0))
    obs = observations(jax.random.PRNGKey(1))
    n = obs.active.shape[0]
    assert obs.active.any(1).all() and len(set(obs.active.sum(1).tolist())) > 1  # 1-3 UEs, mixed

    rng = np.random.default_rng(0)
    m = ENV.max_ues
    choices = Choices(
        ue=jnp.asarray(rng.integers(0, len(agent.candidates.ue.ids), (n, m)), jnp.int32),
        bs=jnp.asarray(rng.integers(0, len(agent.candidates.bs.ids), (n, m)), jnp.int32),
    )
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    noise = {
        k: f32(rng.normal(0, scale, n)) for k, scale in (("log_prob", 0.3), ("value", 0.3), ("target", 1.0))
    }
    advantage = f32(rng.normal(0.5, 2.0, n))
    hp = HParams(**HP, env=ENV_PARAMS)

    def loss_fn(params):
        """jaxmac's PPO loss; the rollout policy's log-probs and values are the current ones plus
        noise (constants: stop_gradient), so some ratios and values clip and some do not. One
        compiled program gives the batch, the loss and the gradient."""
        out = agent(params, obs)
        log_prob = out.policy.log_prob(choices)
        value = jax.lax.stop_gradient(out.value) + noise["value"]
        batch = Batch(
            obs=obs,
            sample=choices,
            log_prob=jax.lax.stop_gradient(log_prob) + noise["log_prob"],
            value=value,
            advantage=advantage,
            target=value + noise["target"],
        )
        normalised = batch.replace(advantage=normalize(batch.advantage))
        loss, terms = ppo_objective(log_prob, out.policy.entropy(), out.value, normalised, hp)
        return loss, (terms, batch, jax.vmap(agent.compiler)(obs))

    loss_and_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True), compiler_options=FAST_COMPILE)
    (_, (terms, batch, prompts)), grads = loss_and_grad(params)
    torch_batch = TorchBatch.from_jaxmac(batch, prompts)
    candidates = {
        g: (np.asarray(c.ids), np.asarray(c.mask))
        for g, c in (("ue", agent.candidates.ue), ("bs", agent.candidates.bs))
    }

    # jaxmac's params came from the checkpoint of ``model``: copying them back changes nothing
    saved = {name: t.clone() for name, t in model.state_dict().items()}
    head = value_head(agent.cfg.d_model, 16)
    load_into_torch(model, head, params, agent.cfg)
    assert model.lm_head.weight is not model.shared.weight
    built, built_head = build_torch(agent.cfg, params)  # the same, from a fresh transformers T5
    assert built.lm_head.weight is not built.shared.weight
    for mine, theirs in ((model, saved), (built, saved), (built_head, head.state_dict())):
        for name, t in mine.state_dict().items():
            torch.testing.assert_close(t, theirs[name], rtol=0, atol=0, msg=name)

    def make_ppo(transitions_per_pass):
        fresh = copy.deepcopy((model, head))  # keeps the embedding ties; a new T5 takes seconds
        return TorchPPO(*fresh, candidates, **HP, transitions_per_pass=transitions_per_pass)

    return {
        "terms": {k: float(v) for k, v in terms.items()},
        "grads": grads,
        "batch": torch_batch,
        "make_ppo": make_ppo,
    }


# (jaxmac path in params, torch name, transpose) of the gradients compared
COMPARED = [
    (("t5", "shared", "embedding"), "shared.weight", False),
    (("t5", "lm_head", "kernel"), "lm_head.weight", True),
    (
        ("t5", "encoder", 0, "attention", "q", "kernel"),
        "encoder.block.0.layer.0.SelfAttention.q.weight",
        True,
    ),
    (
        ("t5", "encoder", 0, "attention", "relative_attention_bias", "embedding"),
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        False,
    ),
    (
        ("t5", "decoder", 1, "cross_attention", "k", "kernel"),
        "decoder.block.1.layer.1.EncDecAttention.k.weight",
        True,
    ),
    (("t5", "decoder", 1, "ff", "wo", "kernel"), "decoder.block.1.layer.2.DenseReluDense.wo.weight", True),
    (("t5", "decoder_norm", "weight"), "decoder.final_layer_norm.weight", False),
]
HEAD = [(("value_head", "layers", i, "kernel"), f"{2 * i}.weight", True) for i in range(3)]


def jax_grad(grads, path, transpose):
    for key in path:
        grads = grads[key]
    g = np.asarray(grads)
    return g.T if transpose else g


def torch_grads(ppo):
    named = dict(ppo.model.named_parameters()) | {
        f"head.{k}": v for k, v in ppo.value_head.named_parameters()
    }
    return {name: p.grad.detach().numpy().copy() for name, p in named.items() if p.grad is not None}


def assert_close_grad(got, want, name):
    scale = max(np.linalg.norm(want), 1e-6)
    assert np.linalg.norm(got - want) <= 1e-4 * scale + 1e-7, (name, np.linalg.norm(got - want), scale)


def test_loss_and_terms_equal_jaxmac(setup):
    ppo = setup["make_ppo"](8)
    loss, terms = ppo.loss(setup["batch"])
    assert float(loss.detach()) == pytest.approx(terms["loss"])
    for name in TERMS:
        np.testing.assert_allclose(terms[name], setup["terms"][name], rtol=1e-4, atol=1e-7, err_msg=name)
    assert 0.0 < setup["terms"]["clip_frac"] < 1.0  # the clip binds for some transitions only
    assert terms["clip_frac"] == pytest.approx(setup["terms"]["clip_frac"])


def test_gradient_equals_jax_grad(setup):
    ppo = setup["make_ppo"](3)  # uneven passes: 3 + 3 + 2 transitions
    ppo.backward(setup["batch"])
    got = torch_grads(ppo)
    for path, name, transpose in COMPARED:
        assert_close_grad(got[name], jax_grad(setup["grads"], path, transpose), name)
    for path, name, transpose in HEAD:
        assert_close_grad(got[f"head.{name}"], jax_grad(setup["grads"], path, transpose), name)
    bias = jax_grad(setup["grads"], ("value_head", "layers", 2, "bias"), False)
    assert_close_grad(got["head.4.bias"], bias, "value head bias")


def test_passes_accumulate_to_the_whole_minibatch_gradient(setup):
    batch = setup["batch"]
    whole = setup["make_ppo"](len(batch))
    loss, _ = whole.loss(batch)
    loss.backward()
    reference = torch_grads(whole)
    for per_pass in (1, len(batch)):
        ppo = setup["make_ppo"](per_pass)
        terms = ppo.backward(batch)
        assert terms["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
        got = torch_grads(ppo)
        assert got.keys() == reference.keys()
        for name, g in got.items():
            assert_close_grad(g, reference[name], f"{name} ({per_pass} per pass)")


def test_update_takes_one_clipped_adam_step(setup):
    batch = setup["batch"]
    ppo = setup["make_ppo"](4)
    before = [p.detach().clone() for p in ppo.params]
    _, expected = ppo.loss(batch)
    terms = ppo.update(batch)
    for name in TERMS:
        assert terms[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-7)
    assert terms["grad_norm"] > HP["max_grad_norm"]  # the clip is exercised
    steps = [(p.detach() - b).abs().max().item() for p, b in zip(ppo.params, before, strict=True)]
    assert max(steps) > 0.5 * HP["lr"]  # Adam's first step moves each weight by about lr
    assert max(steps) <= 1.01 * HP["lr"]
    _, after = ppo.loss(batch)
    assert after["loss"] != expected["loss"]
