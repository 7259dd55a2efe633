"""Properties of the JAX environment: conservation, one compile, inert padding, validation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmac.env import Action, EnvParams, UDTSEnv
from jaxmac.env.params import REWARD_FIELDS
from jaxmac.protocols import make_protocol


def rollout(env, policy, params, key, steps, episodes):
    """``steps`` TTIs of ``episodes`` parallel environments; returns stacked (info, done, obs, state)."""

    def one(key):
        k0, key = jax.random.split(key)
        obs, state = env.reset(k0, params)

        def body(carry, key):
            obs, state = carry
            k_act, k_env = jax.random.split(key)
            action = policy(k_act, obs, state, params)
            obs, state, reward, done, info = env.step(k_env, state, action, params)
            return (obs, state), (info, done, obs)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, steps))[1]

    return jax.jit(jax.vmap(one))(jax.random.split(key, episodes))


def test_conservation_holds_in_every_episode():
    env = UDTSEnv(max_ues=6, buffer_size=3, episode_len=16)
    params = env.default_params.replace(n_min=1, n_max=6, p_arrival=0.6, tbler=0.2, churn=0.1)
    info, done, _ = rollout(env, make_protocol("random", env), params, jax.random.PRNGKey(1), 400, 256)
    ep, last = info.episode.counters, info.episode.last
    done = np.asarray(done)
    assert done.sum() == 256 * 25
    every = {name: np.asarray(getattr(ep, name))[done] for name in ep.__dataclass_fields__}
    end = {name: np.asarray(getattr(last, name))[done] for name in last.__dataclass_fields__}
    for name in ("drops", "lost", "bad_deletes", "good_deletes", "duplicates", "lost_delivered"):
        assert every[name].sum() > 0, f"the run never exercised {name}"
    np.testing.assert_array_equal(
        every["arrivals"],
        every["drops"] + every["lost"] + every["bad_deletes"] + every["good_deletes"] + end["buffered"],
    )
    np.testing.assert_array_equal(
        every["deliveries"], every["good_deletes"] + end["buffered_delivered"] + every["lost_delivered"]
    )


def test_step_compiles_once_across_params():
    env = UDTSEnv()
    step = jax.jit(chex.assert_max_traces(env.step, n=1))
    reset = jax.jit(chex.assert_max_traces(env.reset, n=1))
    policy = make_protocol("contention_free", env)
    for i, params in enumerate(
        [
            env.default_params,
            EnvParams(n_min=1, n_max=8, p_arrival=0.9, tbler=0.0, churn=0.05),
            EnvParams(n_min=3, n_max=3, p_arrival=np.float32(0.1)).with_reward_preset("marl"),
        ]
    ):
        key = jax.random.PRNGKey(i)
        obs, state = reset(key, params)
        for _ in range(3):
            obs, state, *_ = step(key, state, policy(key, obs, state, params), params)


def test_state_does_not_grow_with_buffer_size():
    shapes = [
        jax.tree.map(jnp.shape, UDTSEnv(buffer_size=b).reset(jax.random.PRNGKey(0), EnvParams())[1])
        for b in (2, 2000)
    ]
    assert shapes[0] == shapes[1]


def test_padded_slots_are_inert():
    """Whatever a policy outputs for padded slots changes nothing, and their rows read zero."""
    env = UDTSEnv(max_ues=8)
    params = env.default_params.replace(n_min=3, n_max=3, churn=0.0)
    key = jax.random.PRNGKey(3)
    obs, state = env.reset(key, params)
    policy = make_protocol("random", env)
    pad = ~np.asarray(state.active)
    for t in range(30):
        k_act, k_env = jax.random.split(jax.random.fold_in(key, t))
        action = policy(k_act, obs, state, params)
        quiet = jax.tree.map(lambda a: jnp.where(pad, 0, a), action)
        noisy = jax.tree.map(lambda a: jnp.where(pad, 1, a), action)  # transmit, non-null messages
        outs = [env.step(k_env, state, a, params) for a in (quiet, noisy)]
        chex.assert_trees_all_equal(outs[0], outs[1])
        obs, state = outs[0][0], outs[0][1]
        for field in ("buffer", "action", "ucm", "dcm"):
            assert not np.asarray(getattr(obs.ue, field))[pad].any()


@pytest.mark.parametrize("policy_name", ["contention_free", "random"])
def test_padding_does_not_change_statistics(policy_name):
    """max_ues=8 and max_ues=16 give the same metrics for the same n_min..n_max: the means
    must agree within 4 standard errors of their difference (false alarm rate ~6e-5)."""
    episodes = 4000
    results = []
    for max_ues in (8, 16):
        env = UDTSEnv(max_ues=max_ues)
        params = env.default_params.replace(n_min=2, n_max=5)
        info, done, _ = rollout(
            env,
            make_protocol(policy_name, env),
            params,
            jax.random.PRNGKey(max_ues),
            env.episode_len,
            episodes,
        )
        totals = jax.tree.map(lambda x: np.asarray(x)[:, -1], info.episode)
        results.append(
            {
                "deliveries": totals.counters.deliveries,
                "return": totals.reward,
                "n_ues": totals.n_ues,
                "collisions": totals.counters.collisions,
            }
        )
    for name in results[0]:
        a, b = (np.asarray(r[name], np.float64) for r in results)
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert abs(a.mean() - b.mean()) <= 4 * se + 1e-9, (name, a.mean(), b.mean(), se)


def test_sweep_is_one_vmapped_program():
    env = UDTSEnv()
    p_arrival = jnp.array([0.1, 0.5, 0.9])
    stack = jax.vmap(lambda p: env.default_params.replace(p_arrival=p))(p_arrival)
    run = jax.vmap(lambda p: rollout(env, make_protocol("oracle", env), p, jax.random.PRNGKey(0), 24, 64)[0])
    info = run(stack)
    deliveries = np.asarray(info.episode.counters.deliveries[:, :, -1]).mean(axis=1)
    assert deliveries[0] < deliveries[1] < deliveries[2]


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_min": 0}, "n_min"),
        ({"n_min": 2.5}, "n_min"),
        ({"n_max": 0, "n_min": 0}, "n_min"),
        ({"n_min": 4, "n_max": 3}, "n_min must be <= n_max"),
        ({"p_arrival": -0.1}, "p_arrival"),
        ({"p_arrival": 1.5}, "p_arrival"),
        ({"tbler": 2.0}, "tbler"),
        ({"churn": -1.0}, "churn"),
        *[({w: float("nan")}, w) for w in REWARD_FIELDS],
        ({"p_arrival": np.array([0.5, 1.2])}, "p_arrival"),
    ],
)
def test_bad_params_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        EnvParams().replace(**changes)


@pytest.mark.parametrize(
    "field", ["max_ues", "buffer_size", "episode_len", "ucm_vocab", "dcm_vocab", "history"]
)
@pytest.mark.parametrize("value", [0, -3, 2.0, True])
def test_bad_static_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        UDTSEnv(**{field: value})


def test_n_max_above_max_ues_is_rejected():
    env = UDTSEnv(max_ues=4)
    with pytest.raises(ValueError, match="n_max must be <= max_ues=4"):
        env.reset(jax.random.PRNGKey(0), EnvParams(n_min=2, n_max=5))


@pytest.mark.parametrize(("field", "value"), [("ue", 3), ("ucm", 2), ("dcm", -1), ("dcm", 3)])
def test_out_of_range_action_is_rejected(field, value):
    env = UDTSEnv()
    obs, state = env.reset(jax.random.PRNGKey(0), env.default_params)
    fields = {"ue": np.zeros(8, np.int32), "ucm": np.zeros(8, np.int32), "dcm": np.zeros(8, np.int32)}
    fields[field][2] = value
    with pytest.raises(ValueError, match=f"action.{field}"):
        env.step(jax.random.PRNGKey(0), state, Action(**fields), env.default_params)


def test_reward_presets():
    params = EnvParams().with_reward_preset("marl")
    assert float(params.w_delivery) == 6.0 and float(params.w_bad_delete) == -6.0
    assert float(EnvParams().w_delivery) == 4.5 and float(EnvParams().w_wasted) == -1.5
    with pytest.raises(ValueError, match="reward preset must be one of"):
        EnvParams().with_reward_preset("bogus")


def test_message_words():
    assert UDTSEnv().dcm_words == ("null", "schedule_grant", "acknowledge")
    assert UDTSEnv(ucm_vocab=4).ucm_words == ("m0", "m1", "m2", "m3")
