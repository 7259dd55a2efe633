"""The PPO loop's pieces against hand computations, and its compile/sweep guarantees."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmac.agents import CandidatePolicy, Choices
from jaxmac.algorithms import (
    Batch,
    HParams,
    PPOConfig,
    Trainer,
    gae,
    normalize,
    optimizer,
    ppo_objective,
)
from jaxmac.env import UDTSEnv
from jaxmac.training import make_agent

ENV = UDTSEnv(max_ues=2, episode_len=4)
SMALL = PPOConfig(num_envs=8, epochs=2, minibatches=2, updates=2)


def small_hparams(**kw):
    return HParams(env=ENV.default_params.replace(n_min=1, n_max=2), **kw)


def test_gae_matches_the_recursion_written_out():
    rng = np.random.default_rng(0)
    t, e, gamma, lam = 6, 3, 0.9, 0.8
    reward, value = rng.normal(size=(t, e)), rng.normal(size=(t, e))
    done = rng.random((t, e)) < 0.3
    last = rng.normal(size=e)
    advantage = np.zeros((t, e))
    for j in range(e):
        running = 0.0
        for i in reversed(range(t)):
            next_value = last[j] if i == t - 1 else value[i + 1, j]
            live = 0.0 if done[i, j] else 1.0
            delta = reward[i, j] + gamma * next_value * live - value[i, j]
            running = delta + gamma * lam * live * running
            advantage[i, j] = running
    got_adv, got_target = gae(
        *(jnp.asarray(x, jnp.float32) for x in (reward, value)),
        jnp.asarray(done),
        jnp.asarray(last, jnp.float32),
        gamma,
        lam,
    )
    np.testing.assert_allclose(got_adv, advantage, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_target, advantage + value, rtol=1e-5, atol=1e-5)


def test_loss_on_a_hand_made_batch_equals_the_papers_formulas():
    # four transitions, numbers chosen so that both clips bind somewhere
    new_logp = np.array([-0.5, -1.0, -0.2, -2.0])
    old_logp = np.array([-0.7, -0.6, -0.2, -1.0])
    raw_adv = np.array([1.0, -2.0, 0.5, 3.0])
    new_v = np.array([1.0, 0.0, 2.5, -1.0])
    old_v = np.array([0.5, 0.3, 2.0, -0.2])
    target = np.array([1.2, -0.5, 2.0, 0.0])
    entropy = np.array([1.0, 0.5, 0.8, 0.2])
    eps, vf, ent, kl_c = 0.2, 0.5, 0.01, 0.1
    adv = (raw_adv - raw_adv.mean()) / (raw_adv.std() + 1e-8)
    ratio = np.exp(new_logp - old_logp)
    l_clip = -np.mean(np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv))
    v_clip = old_v + np.clip(new_v - old_v, -eps, eps)
    l_v = 0.5 * np.mean(np.maximum((new_v - target) ** 2, (v_clip - target) ** 2))
    kl = np.mean(ratio - 1 - np.log(ratio))
    expected = l_clip + vf * l_v - ent * entropy.mean() + kl_c * kl

    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    batch = Batch(
        obs=None,
        sample=None,
        log_prob=f32(old_logp),
        value=f32(old_v),
        advantage=normalize(f32(raw_adv)),
        target=f32(target),
    )
    hp = HParams(clip_eps=eps, vf_coef=vf, ent_coef=ent, kl_coef=kl_c)
    loss, terms = ppo_objective(f32(new_logp), f32(entropy), f32(new_v), batch, hp)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(terms["policy_loss"], l_clip, rtol=1e-5)
    np.testing.assert_allclose(terms["value_loss"], l_v, rtol=1e-5)
    np.testing.assert_allclose(terms["approx_kl"], kl, rtol=1e-4)
    assert terms["clip_frac"] == pytest.approx(np.mean(np.abs(ratio - 1) > eps))


def test_joint_log_prob_is_the_mean_over_active_decisions_and_ignores_padding():
    ue = jnp.log(jnp.array([[[0.5, 0.5, 0, 0, 0, 0], [0.1, 0.9, 0, 0, 0, 0]]]) + 1e-30)
    bs = jnp.log(jnp.array([[[0.25, 0.75, 0.0], [0.6, 0.4, 0.0]]]) + 1e-30)
    active = jnp.array([[True, False]])  # slot 1 is padding: its (absurd) choices must not count
    policy = CandidatePolicy(ue_log_probs=ue, bs_log_probs=bs, active=active, ucm_vocab=2)
    choices = Choices(ue=jnp.array([[1, 0]]), bs=jnp.array([[1, 2]]))
    expected = (np.log(0.5) + np.log(0.75)) / 2
    np.testing.assert_allclose(policy.log_prob(choices), [expected], rtol=1e-6)
    h = lambda p: -sum(x * np.log(x) for x in p if x > 0)  # noqa: E731
    np.testing.assert_allclose(policy.entropy(), [(h([0.5, 0.5]) + h([0.25, 0.75])) / 2], rtol=1e-5)


def test_silence_leaves_only_null_messages_normalised():
    rng = np.random.default_rng(1)
    out = CandidatePolicy(
        ue_log_probs=jax.nn.log_softmax(jnp.asarray(rng.normal(size=(3, 2, 6)), jnp.float32)),
        bs_log_probs=jax.nn.log_softmax(jnp.asarray(rng.normal(size=(3, 2, 3)), jnp.float32)),
        active=jnp.ones((3, 2), bool),
        ucm_vocab=2,
    )
    quiet = out.silence()
    p_ue, p_bs = np.exp(quiet.ue_log_probs), np.exp(quiet.bs_log_probs)
    np.testing.assert_allclose(p_ue.sum(-1), 1.0, rtol=1e-6)
    assert np.all(p_ue[..., 1::2] == 0) and np.all(p_bs[..., 0] == 1.0)
    # the null candidates keep their relative odds
    np.testing.assert_allclose(
        p_ue[..., 0] / p_ue[..., 2], np.exp(out.ue_log_probs[..., 0] - out.ue_log_probs[..., 2]), rtol=1e-5
    )
    # the BS no longer decides: the joint log-probability and entropy are the UEs' means
    choices = quiet.sample(jax.random.PRNGKey(0))
    ue = np.take_along_axis(np.asarray(quiet.ue_log_probs), np.asarray(choices.ue)[..., None], -1)[..., 0]
    np.testing.assert_allclose(quiet.log_prob(choices), ue.mean(-1), rtol=1e-6)
    entropies = -np.sum(np.where(p_ue > 0, p_ue * np.log(np.where(p_ue > 0, p_ue, 1)), 0), -1)
    np.testing.assert_allclose(quiet.entropy(), entropies.mean(-1), rtol=1e-5)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="lr"):
        HParams(lr=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        HParams(gamma=1.5)
    with pytest.raises(ValueError, match="epochs"):
        PPOConfig(epochs=0)
    with pytest.raises(ValueError, match="minibatches"):
        Trainer(make_agent("mappo", ENV, hidden=16), PPOConfig(num_envs=3, minibatches=5))
    with pytest.raises(ValueError, match="algo"):
        make_agent("nope", ENV)


@pytest.mark.slow
def test_a_rollout_of_whole_episodes_ends_every_episode():
    """With rollout_len a multiple of episode_len the rollout skips the bootstrap value (zeros):
    exact only because every episode then ends on the rollout's last TTI."""
    for rollout_len in (ENV.episode_len, 2 * ENV.episode_len):
        trainer = Trainer(make_agent("mappo", ENV, hidden=16), PPOConfig(num_envs=4, rollout_len=rollout_len))
        state = jax.jit(trainer.init)(jax.random.PRNGKey(0), small_hparams())
        for _ in range(2):
            state, transitions, _, last_value = jax.jit(trainer.rollout)(state, small_hparams())
            assert bool(jnp.all(transitions.done[-1])) and not bool(jnp.any(last_value))


@pytest.mark.slow
def test_llm_ppo_step_on_100k_prompts_fits_in_4gb_and_compiles_once():
    """A minibatch of 12,500 transitions (100,000 prompts per agent group) of the tiny model:
    the deduplicated step's compiled buffers stay far below 4 GB, and new data does not retrace."""
    env = UDTSEnv()
    trainer = Trainer(make_agent("llm4mac", env, model="tiny", value_hidden=64), PPOConfig(num_envs=8))
    hp = HParams(env=env.default_params.replace(n_min=2, n_max=5))
    n = 12_500
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), n), hp.env)
    zeros = jnp.zeros(n)
    rng = np.random.default_rng(0)
    minibatch = Batch(
        obs=obs,
        sample=Choices(
            ue=jnp.asarray(rng.integers(0, 6, (n, 8))), bs=jnp.asarray(rng.integers(0, 3, (n, 8)))
        ),
        log_prob=zeros - 1.0,
        value=zeros,
        advantage=jnp.asarray(rng.normal(size=n), jnp.float32),
        target=zeros,
    )
    params = trainer.agent.init(jax.random.PRNGKey(1))
    opt_state = optimizer(hp).init(params)
    step = jax.jit(chex.assert_max_traces(trainer.ppo_step, n=1))
    compiled = step.lower(params, opt_state, minibatch, hp).compile()
    memory = compiled.memory_analysis()
    total = memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
    assert total < 4e9, memory
    for advantage in (minibatch.advantage, -minibatch.advantage):
        _, _, terms = step(params, opt_state, minibatch.replace(advantage=advantage), hp)
        assert bool(jnp.isfinite(terms["loss"])) and terms["nonfinite"] == 0
    chex.clear_trace_counter()
