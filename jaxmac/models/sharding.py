"""Parameters split over a mesh's model axis: tensor parallelism of the T5 by annotation.

Each attention's q, k, v and each feed-forward's ``wi`` are split along their output features
(column-parallel), each attention's ``o`` and feed-forward's ``wo`` along their input features
(row-parallel), the shared embedding along the vocabulary and ``lm_head`` along its outputs
(Megatron's layout). XLA's partitioner derives the computation from these layouts: every
device multiplies by its slice of each weight, and one all-reduce per attention and per
feed-forward joins the row-parallel outputs. Adam's moments follow their parameters (the
rule reads the path's names, which the optimizer state repeats). Everything else (norms,
relative-position biases, LoRA matrices, value heads, MLPs) is replicated, as is a weight
whose split dimension the axis size does not divide.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import PartitionSpec as P

#: The mesh axis parameters are split over (a run's ``--model-shards`` devices).
MODEL_AXIS = "model"

#: Kernels split along their output features / their input features, by module name.
COLUMN_PARALLEL = frozenset({"q", "k", "v", "wi", "wi_0", "wi_1", "lm_head"})
ROW_PARALLEL = frozenset({"o", "wo", "shared"})


def _names(entry: Any) -> list[str]:
    """The names of one step of a pytree path (a flat dict keyed by whole paths, as a
    fine-tuning's trainable split, gives several)."""
    for field in ("key", "name", "idx"):
        if hasattr(entry, field):
            value = getattr(entry, field)
            return [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
    return [str(entry)]


def _spec(path: tuple, leaf: Any, shards: int) -> P:
    names = [name for entry in path for name in _names(entry)]
    if len(getattr(leaf, "shape", ())) != 2 or len(names) < 2 or names[-1] not in ("kernel", "embedding"):
        return P()
    owner = names[-3] if names[-2] == "base" and len(names) > 2 else names[-2]  # a LoRA-wrapped kernel
    if owner in COLUMN_PARALLEL and leaf.shape[1] % shards == 0:
        return P(None, MODEL_AXIS)
    if owner in ROW_PARALLEL and leaf.shape[0] % shards == 0:
        return P(MODEL_AXIS, None)
    return P()


def model_partition_specs(tree: Any, shards: int) -> Any:
    """A ``PartitionSpec`` per leaf of ``tree`` (parameters, or an optimizer state holding them):
    the layout above over ``MODEL_AXIS`` when ``shards`` > 1, replicated otherwise."""
    if shards <= 1:
        return jax.tree.map(lambda _: P(), tree)
    return jax.tree_util.tree_map_with_path(lambda path, leaf: _spec(path, leaf, shards), tree)
