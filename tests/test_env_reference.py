"""The JAX environment against the NumPy reference, TTI by TTI, with shared random draws."""

import jax
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_env import ReferenceUDTS

from jaxmac.env import Action, EnvParams, UDTSEnv
from jaxmac.env.params import REWARD_FIELDS

COUNTERS = ReferenceUDTS.EVENTS + ("buffered", "buffered_delivered", "active_ues")
# A few shape configurations (each compiles once); everything dynamic is drawn freely.
STATIC_CONFIGS = [
    dict(max_ues=m, buffer_size=b, episode_len=t, history=k, ucm_vocab=u, dcm_vocab=d)
    for m, b, t, k, u, d in [
        (1, 1, 3, 1, 2, 3),
        (3, 2, 5, 2, 2, 3),
        (5, 3, 4, 3, 3, 4),
        (6, 1, 6, 1, 1, 1),
        (4, 4, 2, 2, 2, 2),
        (2, 2, 1, 1, 3, 3),
    ]
]
draw_step = jax.jit(UDTSEnv.draw_step, static_argnums=0)
transition = jax.jit(UDTSEnv.transition, static_argnums=0)


@st.composite
def configurations(draw):
    static = draw(st.sampled_from(STATIC_CONFIGS))
    n_max = draw(st.integers(1, static["max_ues"]))
    dynamic = {
        "n_min": draw(st.integers(1, n_max)),
        "n_max": n_max,
        "p_arrival": draw(st.sampled_from([0.0, 0.3, 0.7, 1.0])),
        "tbler": draw(st.sampled_from([0.0, 0.25, 1.0])),
        "churn": draw(st.sampled_from([0.0, 0.0, 0.2])),
        **{w: draw(st.floats(-3, 3, width=32)) for w in REWARD_FIELDS},
    }
    # action biases, so that lone transmissions, deletes and duplicates all happen
    action_p = draw(st.sampled_from([(1 / 3, 1 / 3, 1 / 3), (0.5, 0.2, 0.3), (0.2, 0.6, 0.2)]))
    return static, dynamic, action_p, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_step_matches_reference(config):
    static, dynamic, action_p, seed = config
    env = UDTSEnv(**static)
    params = EnvParams(**dynamic)
    ref = ReferenceUDTS(static, {k: float(np.float32(v)) for k, v in dynamic.items()})
    ref.p["n_min"], ref.p["n_max"] = dynamic["n_min"], dynamic["n_max"]
    rng = np.random.default_rng(seed)

    key = jax.random.PRNGKey(seed)
    reset_draws = env.draw_reset(key)
    state = env.reset_with(reset_draws, params)
    ref.reset(float(reset_draws.n_ues))
    assert int(state.totals.n_ues) == ref.n_ues
    for t in range(2 * static["episode_len"] + 1):  # crosses the auto-reset twice
        draws = draw_step(env, jax.random.fold_in(key, t))
        m = static["max_ues"]
        action = Action(
            ue=rng.choice(3, size=m, p=action_p).astype(np.int32),
            ucm=rng.integers(0, static["ucm_vocab"], m, dtype=np.int32),
            dcm=rng.integers(0, static["dcm_vocab"], m, dtype=np.int32),
        )
        obs, state, reward, done, info = transition(env, state, action, draws, params)
        np_draws = {k: np.asarray(getattr(draws, k)) for k in ("leave", "join", "arrive", "decode")}
        ref_reward, ref_done, events = ref.step(np_draws, action.ue, action.ucm, action.dcm)

        assert bool(done) == ref_done
        np.testing.assert_allclose(float(reward), ref_reward, rtol=1e-5, atol=1e-4)
        for name in COUNTERS:
            assert int(getattr(info.tti, name)) == events[name], (t, name)
        if ref_done:
            for name in ReferenceUDTS.EVENTS:
                assert int(getattr(info.episode.counters, name)) == ref.totals[name], (t, name)
            np.testing.assert_allclose(float(info.episode.reward), ref.totals["return"], rtol=1e-5, atol=1e-3)
            assert int(info.episode.n_ues) == ref.n_ues
            ref.reset(float(draws.reset.n_ues))
        expected = ref.observation()
        for name in ("buffer", "action", "ucm", "dcm"):
            np.testing.assert_array_equal(getattr(obs.ue, name), expected[name], err_msg=f"t={t} ue.{name}")
        np.testing.assert_array_equal(obs.bs.ucm, expected["ucm"])
        np.testing.assert_array_equal(obs.bs.dcm, expected["dcm"])
        np.testing.assert_array_equal(obs.bs.channel, expected["channel"], err_msg=f"t={t} channel")
        np.testing.assert_array_equal(obs.bs.sender, expected["sender"], err_msg=f"t={t} sender")
        np.testing.assert_array_equal(obs.active, expected["active"], err_msg=f"t={t} active")
