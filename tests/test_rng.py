"""The environment's hash-expanded uniforms are uniform and independent enough for Monte Carlo."""

import jax
import numpy as np
import pytest

from jaxmac.env.rng import uniforms

N_KEYS, N_WORDS = 20000, 26  # 26 = 3 * max_ues + 2 draws of one TTI at max_ues = 8


@pytest.fixture(scope="module")
def draws():
    keys = jax.random.split(jax.random.PRNGKey(0), N_KEYS)
    return np.asarray(jax.vmap(lambda k: uniforms(k, N_WORDS))(keys), np.float64)


def test_range_and_moments(draws):
    assert draws.min() >= 0.0 and draws.max() < 1.0
    n = draws.size
    assert abs(draws.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(draws.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)


def test_histogram_is_flat(draws):
    counts = np.histogram(draws, bins=100, range=(0, 1))[0]
    expected = draws.size / 100
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 99 + 5 * np.sqrt(2 * 99)  # 99 degrees of freedom, 5 sigma


def test_words_of_one_key_and_of_sibling_keys_are_uncorrelated(draws):
    corr = np.corrcoef(draws.T)  # (26, 26) across keys
    off_diagonal = corr[~np.eye(N_WORDS, dtype=bool)]
    assert np.abs(off_diagonal).max() < 5 / np.sqrt(N_KEYS)
    lagged = np.corrcoef(draws[:-1].ravel(), draws[1:].ravel())[0, 1]  # consecutive keys of a split
    assert abs(lagged) < 5 / np.sqrt(draws.size)


def test_rare_events_have_the_right_rate(draws):
    for p in (1e-3, 1e-2, 0.5):
        hits = (draws < p).sum()
        assert abs(hits - p * draws.size) < 5 * np.sqrt(draws.size * p * (1 - p)), p


def test_typed_and_raw_keys_agree():
    typed = jax.random.key(3)
    raw = jax.random.key_data(typed)
    np.testing.assert_array_equal(uniforms(typed, 5), uniforms(raw, 5))
