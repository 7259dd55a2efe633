"""Sym. MADDPG's pieces: the Gumbel-softmax relaxation, the critic's masking, the replay
buffer's pairs and its settings' errors (its learning, resume, sweeps and devices are tested
with every algorithm's in test_training.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmac.agents import CandidatePolicy, OneHots
from jaxmac.algorithms import MADDPG, MADDPGConfig, MADDPGHParams
from jaxmac.algorithms.maddpg import Critic
from jaxmac.env import UDTSEnv
from jaxmac.training import make_agent

ENV = UDTSEnv(max_ues=2, episode_len=6, history=2)


def _policy(key):
    ue = jax.nn.log_softmax(jax.random.normal(key, (2, 6)), -1)
    bs = jax.nn.log_softmax(jnp.asarray([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]]), -1)
    return CandidatePolicy(ue_log_probs=ue, bs_log_probs=bs, active=jnp.ones(2, bool), ucm_vocab=2)


def test_gumbel_softmax_argmax_samples_the_policy_and_silence_weighs_only_null():
    policy = _policy(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 20_000)
    relaxed = jax.vmap(lambda k: policy.relaxed_sample(k, 1.0))(keys)
    np.testing.assert_allclose(relaxed.ue.sum(-1), 1.0, rtol=1e-5)
    for soft, log_probs in ((relaxed.ue, policy.ue_log_probs), (relaxed.bs, policy.bs_log_probs)):
        counts = jax.nn.one_hot(soft.argmax(-1), soft.shape[-1]).mean(0)
        np.testing.assert_allclose(counts, np.exp(log_probs), atol=0.015)
    quiet = policy.silence().relaxed_sample(jax.random.PRNGKey(2), 1.0)
    assert not np.any(quiet.ue[..., 1::2]) and not np.any(quiet.bs[..., 1:])
    np.testing.assert_allclose(quiet.bs[..., 0], 1.0)


def test_the_critic_ignores_the_decisions_of_padded_slots():
    critic = Critic(ENV, 16, nnx.Rngs(0))
    obs, _ = jax.vmap(ENV.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(0), 8), ENV.default_params.replace(n_min=1, n_max=1)
    )
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    a = OneHots(ue=jax.random.uniform(k1, (8, 2, 6)), bs=jax.random.uniform(k2, (8, 2, 3)))
    b = a.replace(ue=a.ue.at[:, 1].set(0.0), bs=a.bs.at[:, 1].set(1.0))  # slot 1 is padded
    np.testing.assert_array_equal(critic(obs, a), critic(obs, b))
    assert not np.allclose(critic(obs, a), critic(obs, a.replace(ue=a.ue.at[:, 0].set(0.0))))


@pytest.mark.slow
def test_the_buffer_pairs_each_tti_with_the_next_one_of_its_episode():
    """With two TTIs of history, the second observation of a pair holds the first's latest TTI
    one column further back, unless the first ended its episode; the compact storage
    round-trips every value."""
    algorithm = MADDPG(
        make_agent("maddpg", ENV, hidden=16), MADDPGConfig(num_envs=4, batch_size=32, replay_size=96)
    )
    hp = MADDPGHParams(env=ENV.default_params.replace(n_min=1, n_max=2))
    state = jax.jit(algorithm.init)(jax.random.PRNGKey(0), hp)
    state, _ = jax.jit(algorithm.update_chunk, static_argnums=2)(state, hp, 3)  # 72 of 96 slots
    pair = jax.jit(algorithm.buffer().sample)(state.buffer, jax.random.PRNGKey(1)).experience  # one program
    first, second = pair.first, pair.second
    assert first.obs.ue.buffer.dtype == jnp.int8
    live = ~np.asarray(first.done)
    assert live.sum() > 0 and (~live).sum() > 0
    for name in ("buffer", "action", "ucm", "dcm"):
        now, later = getattr(first.obs.ue, name), getattr(second.obs.ue, name)
        np.testing.assert_array_equal(np.asarray(later)[live][..., 1], np.asarray(now)[live][..., 0])
    taken = np.asarray(second.obs.ue.action)[..., 0] == np.asarray(first.sample.ue) // 2  # (B, M)
    assert np.all(taken[live[:, None] & np.asarray(first.obs.active)])  # padded slots record nothing


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(replay_size=100), "replay_size must hold two updates"),
        (dict(rollout_len=1), "rollout_len must be >= 2"),
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
        (dict(batch_size=5000, replay_size=4096), "batch_size must be <= replay_size=4096"),
    ],
)
def test_bad_settings_name_the_field(config, message):
    agent = make_agent("maddpg", ENV, hidden=16)
    with pytest.raises(ValueError, match=message):
        MADDPG(agent, MADDPGConfig(num_envs=16, **config))
    with pytest.raises(ValueError, match="tau must be finite and > 0.0 and <= 1.0"):
        MADDPGHParams(tau=0.0)
