"""Scripted protocols behave as specified, and the oracle bounds contention_free."""

import jax
import numpy as np
import pytest

import jaxmac
from jaxmac.env import UDTSEnv
from jaxmac.env.spaces import ACKNOWLEDGE, SCHEDULE_GRANT, SCHEDULE_REQUEST, TRANSMIT
from jaxmac.protocols import Aloha, make_protocol

ENV = UDTSEnv()
COUNTS = list(range(1, 9))


@pytest.fixture(scope="module")
def tables():
    key = jax.random.PRNGKey(7)
    return {
        name: {
            row["n_ues"]: row
            for row in jaxmac.evaluate(
                ENV, make_protocol(name, ENV), ENV.default_params, COUNTS, 600, key, name=name
            ).rows
        }
        for name in ("contention_free", "oracle", "aloha", "random")
    }


def test_oracle_beats_contention_free_at_every_count(tables):
    for n in COUNTS:
        cf, oracle = tables["contention_free"][n], tables["oracle"][n]
        margin = oracle["throughput_ci95"] + cf["throughput_ci95"]
        assert oracle["throughput"] - cf["throughput"] > margin, n


def test_contention_free_is_collision_free_and_lossless(tables):
    for n in COUNTS:
        row = tables["contention_free"][n]
        assert row["collisions"] == row["duplicates"] == row["bad_deletes"] == 0, n


def test_aloha_and_oracle_never_delete_unreceived_data(tables):
    for name in ("aloha", "oracle"):
        for n in COUNTS:
            assert tables[name][n]["bad_deletes"] == 0 and tables[name][n]["duplicates"] == 0, (name, n)
    assert tables["aloha"][8]["collisions"] > 0 and tables["oracle"][8]["collisions"] == 0


def test_random_is_worst_at_high_load(tables):
    for name in ("contention_free", "oracle", "aloha"):
        assert tables[name][8]["throughput"] > tables["random"][8]["throughput"]


def test_contention_free_handshake():
    """Follow one lone UE: request, grant, transmit, acknowledge, delete."""
    env = UDTSEnv(max_ues=2)
    params = env.default_params.replace(n_min=1, n_max=1, p_arrival=1.0, tbler=0.0)
    policy = make_protocol("contention_free", env)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    trace = []
    for t in range(8):
        action = policy(None, obs, state, params)
        trace.append((int(action.ue[0]), int(action.ucm[0]), int(action.dcm[0])))
        obs, state, *_ = env.step(jax.random.PRNGKey(t), state, action, params)
    ues, ucms, dcms = zip(*trace, strict=True)
    assert ucms[1] == SCHEDULE_REQUEST  # an SDU arrived in TTI 0: request in TTI 1
    assert dcms[2] == SCHEDULE_GRANT  # BS grants in TTI 2
    assert ues[3] == TRANSMIT  # UE transmits in TTI 3
    assert dcms[4] == ACKNOWLEDGE  # BS acknowledges in TTI 4
    assert ues[5] == 2  # UE deletes in TTI 5


def test_random_is_uniform():
    policy = make_protocol("random", UDTSEnv(ucm_vocab=4, dcm_vocab=5))
    obs, state = ENV.reset(jax.random.PRNGKey(0), ENV.default_params)
    actions = jax.vmap(lambda k: policy(k, obs, state, None))(jax.random.split(jax.random.PRNGKey(1), 5000))
    for field, vocab in (("ue", 3), ("ucm", 4), ("dcm", 5)):
        freq = np.bincount(np.asarray(getattr(actions, field)).ravel(), minlength=vocab) / (5000 * 8)
        np.testing.assert_allclose(freq, 1 / vocab, atol=0.01)


def test_protocol_errors():
    with pytest.raises(ValueError, match="policy must be one of"):
        make_protocol("csma", ENV)
    with pytest.raises(ValueError, match="aloha q"):
        Aloha(q=0.0)
    with pytest.raises(ValueError, match="ucm_vocab=2"):
        make_protocol("contention_free", UDTSEnv(ucm_vocab=3))
