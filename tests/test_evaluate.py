"""``evaluate``: one compile, deterministic lanes, common random numbers, honest statistics."""

import chex
import jax
import numpy as np
import pytest

import jaxmac
from jaxmac.env import UDTSEnv
from jaxmac.evaluation import METRICS, evaluate, runner
from jaxmac.protocols import make_protocol

ENV = UDTSEnv()


def test_evaluate_compiles_once_across_counts_and_params(monkeypatch):
    traced = jax.jit(chex.assert_max_traces(runner._run_episodes, n=1), static_argnames=("env", "policy"))
    monkeypatch.setattr(runner, "run_episodes", traced)
    policy = make_protocol("aloha", ENV, q=0.37)  # a policy no other test compiled
    for counts, episodes, params in [
        ([1, 2], 10, ENV.default_params),
        ([3, 4, 5, 6, 7], 50, ENV.default_params.replace(p_arrival=0.9, tbler=0.1)),
        ([8], 300, ENV.default_params.with_reward_preset("marl").replace(churn=0.02)),
    ]:
        table = evaluate(ENV, policy, params, counts, episodes, jax.random.PRNGKey(0), chunk_size=256)
        assert [r["n_ues"] for r in table.rows] == counts
        assert all(r["episodes"] == episodes for r in table.rows)


def test_rows_hold_every_metric_and_a_ci():
    table = evaluate(
        ENV,
        make_protocol("contention_free", ENV),
        ENV.default_params,
        [2, 5],
        400,
        jax.random.PRNGKey(1),
        name="cf",
    )
    for row in table.rows:
        assert row["policy"] == "cf"
        assert set(METRICS) | {"policy", "n_ues", "episodes", "throughput_ci95", "env"} == set(row)
        assert row["throughput"] == pytest.approx(row["deliveries"] / ENV.episode_len, rel=1e-5)
        assert 0 < row["throughput_ci95"] < 0.05
    assert "throughput_ci95" in table.format().splitlines()[0]


def test_chunking_does_not_change_results():
    policy = make_protocol("random", ENV)
    key = jax.random.PRNGKey(2)
    a = evaluate(ENV, policy, ENV.default_params, [1, 4, 8], 100, key, chunk_size=64).rows
    b = evaluate(ENV, policy, ENV.default_params, [1, 4, 8], 100, key, chunk_size=4096).rows
    assert a == b


def test_ci_matches_the_spread_of_independent_runs(optimized):
    """The 95% CI half-width should match 1.96 x the spread of the mean across seeds."""
    policy = make_protocol("aloha", ENV)
    means, cis = [], []
    for seed in range(20):
        row = evaluate(ENV, policy, ENV.default_params, [4], 100, jax.random.PRNGKey(seed)).rows[0]
        means.append(row["throughput"])
        cis.append(row["throughput_ci95"])
    assert np.mean(cis) == pytest.approx(1.96 * np.std(means, ddof=1), rel=0.5)


def test_common_random_numbers_across_policies():
    key = jax.random.PRNGKey(3)
    arrivals = [
        [
            r["arrivals"]
            for r in evaluate(ENV, make_protocol(name, ENV), ENV.default_params, [1, 3, 8], 50, key).rows
        ]
        for name in ("contention_free", "oracle", "random")
    ]
    assert arrivals[0] == arrivals[1] == arrivals[2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_ues": [0, 1]}, "n_ues"),
        ({"n_ues": [9]}, "n_ues"),
        ({"n_ues": []}, "n_ues"),
        ({"episodes": 0}, "episodes"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(ENV, make_protocol("oracle", ENV), ENV.default_params, **{"n_ues": [1], **kwargs})


def test_top_level_api():
    env = jaxmac.UDTSEnv(max_ues=8, buffer_size=20, episode_len=24, ucm_vocab=2, dcm_vocab=3, history=1)
    params = env.default_params.replace(n_min=2, n_max=5, p_arrival=0.5, tbler=1e-3)
    key = jax.random.PRNGKey(0)
    obs, state = env.reset(key, params)
    action = jaxmac.Action(ue=np.zeros(8, np.int32), ucm=np.zeros(8, np.int32), dcm=np.zeros(8, np.int32))
    obs, state, reward, done, info = env.step(key, state, action, params)
    assert obs.ue.buffer.shape == (8, 1) and obs.bs.channel.shape == (1,) and not bool(done)
