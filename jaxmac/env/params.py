"""Dynamic environment parameters (docs/SPEC.md §1.1, 1.4): everything a sweep may vary.

``EnvParams`` is a pytree of scalars, so one compiled program can be vmapped
over a stack of them. Concrete values are checked and converted to fixed
dtypes when an ``EnvParams`` is built (also by ``replace``), which means a bad
value fails at once with the field's name, and that Python ints and floats
never cause a retrace. Inside jit/vmap the fields are tracers and pass through.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

INT_FIELDS = ("n_min", "n_max")
PROBABILITY_FIELDS = ("p_arrival", "tbler", "churn")
REWARD_FIELDS = (
    "w_delivery",
    "w_duplicate",
    "w_wasted",
    "w_bad_delete",
    "w_good_delete",
    "w_failure",
    "w_drop",
)


_LLM4MAC_RHO = 1.5  # the LLM4MAC code
_MARL_RHO = 3.0  # the authors' MADDPG/MAPPO baselines

#: Reward weight presets of docs/SPEC.md §1.4, with rho folded into the weights.
REWARD_PRESETS: dict[str, dict[str, float]] = {
    "llm4mac": {
        "w_delivery": 3 * _LLM4MAC_RHO,
        "w_duplicate": 0.0,
        "w_wasted": -_LLM4MAC_RHO,
        "w_bad_delete": -_LLM4MAC_RHO,
        "w_good_delete": _LLM4MAC_RHO,
        "w_failure": 0.0,
        "w_drop": 0.0,
    },
    "marl": {
        "w_delivery": 2 * _MARL_RHO,
        "w_duplicate": -1.0,
        "w_wasted": -1.0,
        "w_bad_delete": -2 * _MARL_RHO,
        "w_good_delete": 0.0,
        "w_failure": -1.0,
        "w_drop": 0.0,
    },
}


def is_concrete(value: Any) -> bool:
    """True for Python/NumPy numbers and committed jax arrays, False for tracers and placeholders."""
    if isinstance(value, jax.core.Tracer):
        return False
    return isinstance(value, (int, float, np.ndarray, np.number, jax.Array)) and not isinstance(value, bool)


@struct.dataclass
class EnvParams:
    """Per-episode/per-sweep parameters of the UDTS environment.

    Scalars here; a leading axis on every field (``jax.tree.map(jnp.stack, ...)``)
    makes a stack that ``jax.vmap`` sweeps over.
    """

    n_min: Any = 2  # () int32, fewest active UEs drawn at reset
    n_max: Any = 5  # () int32, most active UEs drawn at reset (and the churn join limit)
    p_arrival: Any = 0.5  # () float32, Bernoulli SDU arrival probability per active UE per TTI
    tbler: Any = 1e-3  # () float32, transport block error rate of a lone PUSCH transmission
    churn: Any = 0.0  # () float32, per-TTI leave probability of an active UE / join of an empty slot
    w_delivery: Any = REWARD_PRESETS["llm4mac"]["w_delivery"]
    w_duplicate: Any = REWARD_PRESETS["llm4mac"]["w_duplicate"]
    w_wasted: Any = REWARD_PRESETS["llm4mac"]["w_wasted"]
    w_bad_delete: Any = REWARD_PRESETS["llm4mac"]["w_bad_delete"]
    w_good_delete: Any = REWARD_PRESETS["llm4mac"]["w_good_delete"]
    w_failure: Any = REWARD_PRESETS["llm4mac"]["w_failure"]
    w_drop: Any = REWARD_PRESETS["llm4mac"]["w_drop"]

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not all(is_concrete(v) for v in values.values()):
            return  # traced (inside jit/vmap) or a tree of placeholders: nothing to check
        arrays = {k: np.asarray(v) for k, v in values.items()}
        _validate(arrays)
        for name, value in arrays.items():
            dtype = jnp.int32 if name in INT_FIELDS else jnp.float32
            object.__setattr__(self, name, jnp.asarray(value, dtype=dtype))

    def with_reward_preset(self, name: str) -> EnvParams:
        """These parameters with the reward weights of preset ``name`` (docs/SPEC.md §1.4)."""
        if name not in REWARD_PRESETS:
            raise ValueError(f"reward preset must be one of {sorted(REWARD_PRESETS)}, got {name!r}")
        return self.replace(**REWARD_PRESETS[name])


def _validate(arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming the first field outside its allowed range."""
    for name in INT_FIELDS:
        value = arrays[name]
        if not np.all(np.mod(value, 1) == 0):
            raise ValueError(f"{name} must be an integer, got {value}")
        if not np.all(value >= 1):
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not np.all(arrays["n_min"] <= arrays["n_max"]):
        raise ValueError(f"n_min must be <= n_max, got n_min={arrays['n_min']}, n_max={arrays['n_max']}")
    for name in PROBABILITY_FIELDS:
        value = arrays[name]
        if not np.all((value >= 0) & (value <= 1)):
            raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    for name in REWARD_FIELDS:
        if not np.all(np.isfinite(arrays[name])):
            raise ValueError(f"{name} must be a finite reward weight, got {arrays[name]}")
