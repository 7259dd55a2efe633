"""jaxmac's flat-drawn Gumbel and categorical samples are jax.random's own values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmac.sampling import categorical, gumbel

SHAPES = [(3,), (64, 8, 6), (5, 8, 3), (2, 1, 7)]


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_draws_equal_jax_random(shape, partitionable):
    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        for key in (jax.random.PRNGKey(7), jax.random.key(11)):
            np.testing.assert_array_equal(gumbel(key, shape), jax.random.gumbel(key, shape))
            logits = jax.random.normal(jax.random.PRNGKey(1), shape)
            np.testing.assert_array_equal(
                categorical(key, logits), jax.random.categorical(key, logits, axis=-1)
            )
    finally:
        jax.config.update("jax_threefry_partitionable", before)


def test_categorical_follows_the_probabilities():
    probs = jnp.asarray([0.1, 0.6, 0.3])
    logits = jnp.broadcast_to(jnp.log(probs), (20000, 3))
    counts = np.bincount(np.asarray(categorical(jax.random.PRNGKey(0), logits)), minlength=3)
    np.testing.assert_allclose(counts / 20000, probs, atol=0.015)
