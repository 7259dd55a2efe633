"""Atomic checkpoints of a whole runner state with orbax.

Orbax writes each step into a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact. The state is saved as its flat list
of leaves (any pytree: parameters, optimizer state, environment states, keys) and restored
into the structure of a freshly initialised state, which also restores each leaf's sharding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _leaves(tree: Any) -> dict[str, Any]:
    return {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


class Checkpoints:
    """The checkpoints of one run, kept under ``directory`` (the newest ``keep``)."""

    def __init__(self, directory: Path, keep: int = 2) -> None:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self.directory = Path(directory)
        self.manager = ocp.CheckpointManager(
            self.directory.absolute(), options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest(self) -> int | None:
        """The newest complete checkpoint's step (updates done), or None."""
        return self.manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(_leaves(state)), force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, like: Any) -> Any:
        """The state saved at ``step``, in the structure (and shardings) of ``like``."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _leaves(like))
        stored = len(self.manager.item_metadata(step))
        if stored != len(target):
            raise ValueError(
                f"checkpoint {step} in {self.directory} holds {stored} arrays where this run's state "
                f"has {len(target)}: it was written with another layout of the runner state (for "
                "instance by an earlier jaxmac, whose Adam kept one array per parameter). Resume it "
                "with the version that wrote it, or train into a new directory."
            )
        saved = self.manager.restore(step, args=ocp.args.StandardRestore(target))
        return jax.tree.unflatten(jax.tree.structure(like), [saved[k] for k in sorted(saved)])

    def close(self) -> None:
        self.manager.close()
