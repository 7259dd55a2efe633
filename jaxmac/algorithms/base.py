"""The seam between a learning algorithm and the host loop that runs it.

An ``Algorithm`` knows one member of a run: how to initialise its state (everything a
checkpoint holds) and how to do a chunk of updates as a pure, jittable function. The host
loop (``jaxmac.training``) owns the rest: the device mesh, ``jit`` and the compile cache, the
stack of members (a single run is a sweep of one), checkpoints, metrics and evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmac.agents import Agent, Params
from jaxmac.env import EnvParams, EnvState, Observation, UDTSEnv
from jaxmac.env.params import is_concrete
from jaxmac.models.sharding import MODEL_AXIS, model_partition_specs

#: The name of the mesh axis the parallel episodes are sharded over.
EPISODE_AXIS = "episodes"


class Algorithm(Protocol):
    """A learning algorithm for one agent, as the host loop sees it."""

    agent: Agent
    config: Any  # its settings (a dataclass); ``updates``, the total, is only ``train``'s
    metric_names: tuple[str, ...]  # the metrics ``update_chunk`` reports (a run's stop_if bounds name them)

    @property
    def steps_per_update(self) -> int:
        """Environment steps (episode-TTIs) of one update."""
        ...

    def init(self, key: jax.Array, hp: Any) -> Any:
        """One member's initial state (a pytree; jittable and vmappable over ``key`` and ``hp``)."""
        ...

    def update_chunk(
        self, state: Any, hp: Any, n: int, count: Any = None
    ) -> tuple[Any, dict[str, jax.Array]]:
        """``count`` (traced, default ``n``) <= ``n`` (static) updates; float32 metrics (n,) per
        name, NaN past ``count``. The host loop writes every name to the run's metrics and reads
        ``loss`` and ``nonfinite`` (steps skipped as non-finite) to stop a diverged run. It never
        reads ``config.updates``: a run extended by ``--resume`` calls the same program."""
        ...

    def partition_specs(self) -> Any:
        """A state of ``PartitionSpec``s: ``P(EPISODE_AXIS)`` for leaves whose leading axis is the
        parallel episodes, ``P()`` for the replicated ones."""
        ...

    def policy_params(self, state: Any) -> Params:
        """The agent's parameters in a state (what evaluation acts with); it only selects, so a
        stack of states gives the stack of parameters."""
        ...


def check_counts(config: Any) -> None:
    """For an algorithm settings dataclass's ``__post_init__``: every field is an integer >= 1
    (episodes, lengths, sizes, steps); a field whose default is None may be None (derived later,
    e.g. ``rollout_len`` from ``episode_len``). A bad one is an error naming it."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{f.name} must be an integer >= 1, got {value!r}")


def episode_devices(mesh: Mesh | None) -> int:
    """The devices the parallel episodes are split over (the mesh's ``EPISODE_AXIS``)."""
    return 1 if mesh is None else mesh.shape[EPISODE_AXIS]


def check_mesh(mesh: Mesh | None, num_envs: int) -> None:
    """The parallel episodes must split evenly over the mesh's episode axis."""
    if num_envs % episode_devices(mesh):
        raise ValueError(
            f"num_envs={num_envs} must be a multiple of the {episode_devices(mesh)} devices the "
            "episodes are split over"
        )


def model_shards(mesh: Mesh | None) -> int:
    """The devices the parameters are split over (the mesh's ``MODEL_AXIS``; 1 without one)."""
    return 1 if mesh is None else dict(mesh.shape).get(MODEL_AXIS, 1)


def param_specs(mesh: Mesh | None, tree: Any) -> Any:
    """Partition specs of parameters (or an optimizer state of them, ``optimizer(flat=False)``):
    split over the mesh's ``MODEL_AXIS`` when it has more than one device
    (``jaxmac.models.sharding``), replicated otherwise."""
    return model_partition_specs(tree, model_shards(mesh))


def reset_episodes(
    env: UDTSEnv, key: jax.Array, num_envs: int, env_params: EnvParams, mesh: Mesh | None
) -> tuple[Observation, EnvState]:
    """``num_envs`` fresh episodes (leading axis E), laid out over ``mesh``."""
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), env_params)
    return constrain_episodes(mesh, obs), constrain_episodes(mesh, env_state)


def specs_like(tree: Any, spec: P) -> Any:
    """``tree`` with every leaf replaced by ``spec`` (for ``Algorithm.partition_specs``)."""
    return jax.tree.map(lambda _: spec, tree)


def check_range(name: str, value: Any, low: float, high: float, inclusive: bool) -> None:
    """A concrete ``value`` (a number, or an array of them: a sweep's) must be finite, above
    ``low`` (or equal to it, if ``inclusive``) and at most ``high``, or it is an error naming
    ``name``; a tracer passes (its concrete value was checked where it was made)."""
    if not is_concrete(value):
        return
    v = np.asarray(value, np.float64)
    above = v >= low if inclusive else v > low
    if not np.all(np.isfinite(v) & above & (v <= high)):
        bound = f"{'>=' if inclusive else '>'} {low}" + (f" and <= {high}" if high < float("inf") else "")
        raise ValueError(f"{name} must be finite and {bound}, got {value}")


def store_checked(hparams: Any, ranges: dict[str, tuple[float, float, bool]]) -> None:
    """For a hyperparameters dataclass's ``__post_init__``: check every concrete field named in
    ``ranges`` (low, high, low inclusive; ``check_range``) and store it as a float32 array, so a
    Python float and an array never compile twice; tracers pass through."""
    for name, (low, high, inclusive) in ranges.items():
        value = getattr(hparams, name)
        check_range(name, value, low, high, inclusive)
        if is_concrete(value):
            object.__setattr__(hparams, name, jnp.asarray(value, jnp.float32))


def constrain_episodes(mesh: Mesh | None, tree: Any) -> Any:
    """Pin a pytree whose leaves lead with the parallel episodes to ``mesh``'s ``EPISODE_AXIS``
    (unchanged without a mesh)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P(EPISODE_AXIS))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def run_updates(
    update: Callable[[Any], tuple[Any, dict[str, jax.Array]]],
    state: Any,
    n: int,
    count: Any,
    names: Sequence[str],
) -> tuple[Any, dict[str, jax.Array]]:
    """``update_chunk``'s loop: ``count`` (traced; None: ``n``) <= ``n`` (static) calls of
    ``update(state) -> (state, metrics)``, whose metrics are exactly ``names``; returns the state
    and (n,) float32 per name, NaN past ``count``. A shorter chunk (a run's last, a resume's
    first) thus runs the program compiled for ``n`` instead of compiling another."""
    count = n if count is None else count

    def one(i: jax.Array, carry: tuple) -> tuple:
        state, metrics = carry
        state, new = update(state)
        if set(new) != set(names):
            raise ValueError(f"update metrics {sorted(new)} differ from the declared {sorted(names)}")
        return state, {name: metrics[name].at[i].set(new[name]) for name in names}

    empty = {name: jnp.full(n, jnp.nan, jnp.float32) for name in names}
    return jax.lax.fori_loop(0, count, one, (state, empty))


def optimizer(hp: Any, flat: bool = True) -> optax.GradientTransformation:
    """Adam with gradient-norm clipping (``hp.lr``, ``hp.max_grad_norm``); built from traced ``hp``
    inside the compiled loop.

    ``flat``: it works on the parameters raveled into one vector (``optax.flatten``; the same
    arithmetic), so the compiled program holds a few large elementwise kernels instead of a
    dozen for each of the model's arrays (with ``global_norm``, the tiny T5's 58 arrays: this
    step compiled in about 1 s instead of 3.4-4.3 s here); Adam's moments are then flat
    vectors. With parameters split over devices (``model_shards`` > 1) each moment keeps its
    parameter's shape and layout instead (``flat=False``): a flat vector would gather them."""
    adam = optax.chain(optax.clip_by_global_norm(hp.max_grad_norm), optax.adam(hp.lr))
    return optax.flatten(adam) if flat else adam


def guarded_step(
    hp: Any, loss: jax.Array, grads: Params, params: Params, opt_state: Any, flat: bool = True
) -> tuple[Params, Any, dict[str, jax.Array]]:
    """One step of ``optimizer(hp, flat)``, skipped when the loss or the gradient is not finite, so one
    bad batch cannot poison the parameters. Returns the parameters, the optimizer state and
    the step's ``grad_norm`` and ``nonfinite`` (1 when skipped)."""
    updates, new_opt_state = optimizer(hp, flat).update(grads, opt_state, params)
    grad_norm = global_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    terms = {"grad_norm": grad_norm, "nonfinite": (~ok).astype(jnp.float32)}
    return keep(optax.apply_updates(params, updates), params), keep(new_opt_state, opt_state), terms


def global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves together, over one raveled vector (one reduction, not one per
    leaf); infinite or NaN if any entry is."""
    return jnp.linalg.norm(ravel_pytree(tree)[0])
