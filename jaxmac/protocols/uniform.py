"""The ``random`` policy: uniform over buffer actions and messages."""

from __future__ import annotations

import dataclasses

import jax

from jaxmac.env import Action, EnvParams, EnvState, Observation
from jaxmac.env.spaces import UE_ACTION_WORDS


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class UniformRandom:
    """Every slot draws its action, UCM and DCM uniformly and independently."""

    ucm_vocab: int
    dcm_vocab: int

    def __call__(self, key: jax.Array, obs: Observation, state: EnvState, params: EnvParams) -> Action:
        del state, params
        shape = obs.active.shape
        k_ue, k_ucm, k_dcm = jax.random.split(key, 3)
        return Action(
            ue=jax.random.randint(k_ue, shape, 0, len(UE_ACTION_WORDS)),
            ucm=jax.random.randint(k_ucm, shape, 0, self.ucm_vocab),
            dcm=jax.random.randint(k_dcm, shape, 0, self.dcm_vocab),
        )
