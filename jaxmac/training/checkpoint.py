"""Atomic checkpoints of a whole runner state with orbax, keyed by the path of every leaf.

Orbax writes each step into a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact. The state is saved as a nested dict of
its leaves named by their paths in the state (``params.t5.shared.embedding``,
``opt_state.0.mu``, ...: any pytree of parameters, optimizer state, environment states, keys)
and restored by name into the structure of a freshly initialised state, which also restores
each leaf's sharding. A state whose layout changed since the checkpoint was written cannot
silently restore one leaf into another of the same shape: the error names the leaves that
are missing or extra.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _key(entry: Any) -> str:
    """One step of a pytree path as a name: an attribute, a dict key or a sequence index."""
    for field in ("name", "key", "idx"):
        if hasattr(entry, field):
            return str(getattr(entry, field))
    return str(entry)


def _paths(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
    """(path as names, leaf) of every leaf of ``tree``, in its flattening order."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(tuple(_key(k) for k in path), leaf) for path, leaf in flat]


def _nested(tree: Any) -> dict[str, Any]:
    """The leaves of ``tree`` as nested dicts keyed by the steps of their paths."""
    out: dict[str, Any] = {}
    for path, leaf in _paths(tree):
        node = out
        for step in path[:-1]:
            node = node.setdefault(step, {})
        node[path[-1]] = leaf
    return out


def _names(tree: Any) -> set[str]:
    return {".".join(path) for path, _ in _paths(tree)}


def _silence_failed_io_reports() -> None:
    """Drop the unraisable reports of checkpoint reads or writes that fail after the first
    failure was raised: orbax's coroutines collected unfinished, and tensorstore's callbacks
    finding orbax's event loop closed (every other report passes)."""
    hook = sys.unraisablehook
    if getattr(hook, "silences_failed_reads", False):
        return

    def from_a_read(report: Any) -> bool:
        error, frame = report.exc_value, report.exc_traceback
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return True
        while frame is not None:
            if f"{os.sep}orbax{os.sep}" in frame.tb_frame.f_code.co_filename:
                return True
            frame = frame.tb_next
        return False

    def quiet(report: Any) -> None:
        if not from_a_read(report):
            hook(report)

    quiet.silences_failed_reads = True  # type: ignore[attr-defined]
    sys.unraisablehook = quiet


class DamagedCheckpoint(RuntimeError):
    """A checkpoint's files cannot be read (cut short, corrupted)."""


class CheckpointNotWritten(RuntimeError):
    """A checkpoint could not be written (a full disk, a directory made read-only); the
    checkpoints written before it are intact."""


class Checkpoints:
    """The checkpoints of one run, kept under ``directory`` (the newest ``keep``). A context
    manager: leaving it closes the manager. ``create=False`` reads without creating anything.
    ``writer=True`` (the run's one writer, under its lock) removes the partial checkpoints a
    killed save left behind; a reader must not, they may be a live run's save in progress."""

    def __init__(self, directory: Path, keep: int = 2, create: bool = True, writer: bool = False) -> None:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=create, enable_async_checkpointing=False, cleanup_tmp_directories=writer
        )
        self.directory = Path(directory)
        self.manager = ocp.CheckpointManager(
            self.directory.absolute(), options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest(self) -> int | None:
        """The newest complete checkpoint's step (updates done), or None."""
        return self.manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Write ``state`` as checkpoint ``step``. Any failure while writing (orbax and
        tensorstore report a full disk in several ways) becomes one ``CheckpointNotWritten``
        naming the step, the directory and the checkpoint to resume from; the partial files are
        removed, so they hold no space."""
        _silence_failed_io_reports()
        orbax_log = logging.getLogger("absl")
        level = orbax_log.level
        orbax_log.setLevel(logging.CRITICAL)  # orbax logs the failure from its thread, then raises it
        try:
            self.manager.save(step, args=ocp.args.StandardSave(_nested(state)), force=True)
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            failed = self._not_written(step, (str(e).strip().splitlines() or [type(e).__name__])[0])
        else:
            return
        finally:
            orbax_log.setLevel(level)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        gc.collect()
        for partial in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(partial, ignore_errors=True)
        raise failed

    def _not_written(self, step: int, reason: str) -> CheckpointNotWritten:
        if "No space left on device" in reason:
            reason = "no space left on device"
        kept = self.manager.all_steps()
        return CheckpointNotWritten(
            f"checkpoint {step} could not be written to {self.directory} ({reason[:200]}); "
            + (
                f"the checkpoint of update {max(kept)} is intact: free space, then `jaxmac train "
                "--out RUN --resume` continues from it"
                if kept
                else "no checkpoint was written yet: free space, then `jaxmac train --out RUN --resume` "
                "starts the run from its beginning"
            )
        )

    def restore(self, step: int, like: Any) -> Any:
        """The state saved at ``step``, in the structure (and shardings) of ``like``; a leaf of
        ``like`` the checkpoint lacks, or one it holds that ``like`` has not, is an error naming it."""
        stored = self._read(step, lambda: _names(self.manager.item_metadata(step)))
        wanted = _names(like)
        if stored != wanted:
            missing, extra = sorted(wanted - stored), sorted(stored - wanted)
            raise ValueError(
                f"checkpoint {step} in {self.directory} was written with another layout of the runner "
                f"state: it lacks {missing[:3] or 'nothing'}{' ...' * (len(missing) > 3)} and holds "
                f"{extra[:3] or 'nothing'}{' ...' * (len(extra) > 3)} besides ({len(missing)} missing, "
                f"{len(extra)} extra). Resume it with the jaxmac version that wrote it, or train into "
                "a new directory."
            )
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _nested(like))
        saved = self._read(step, lambda: self.manager.restore(step, args=ocp.args.StandardRestore(target)))
        leaves = []
        for path, _ in _paths(like):
            node = saved
            for step_name in path:
                node = node[step_name]
            leaves.append(node)
        return jax.tree.unflatten(jax.tree.structure(like), leaves)

    def _read(self, step: int, read: Callable[[], Any]) -> Any:
        """``read()`` of checkpoint ``step``; any failure of orbax or tensorstore (many kinds: all
        mean files that cannot be read) becomes one ``DamagedCheckpoint`` naming the step. The
        other reads of a damaged checkpoint (orbax's asyncio tasks, tensorstore's callbacks)
        fail too, some after orbax's event loop is closed: their reports are silenced, so the
        one error says it all."""
        _silence_failed_io_reports()
        try:
            return read()
        except Exception as e:  # noqa: BLE001
            damaged = self._damaged(step, e)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        gc.collect()
        raise damaged

    def _damaged(self, step: int, error: Exception) -> DamagedCheckpoint:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        earlier = [s for s in self.manager.all_steps() if s < step]
        offer = (
            f"the previous checkpoint is update {max(earlier)}: `jaxmac train --out RUN --resume "
            "--previous-checkpoint` sets the damaged one aside and continues from it"
            if earlier
            else "there is no earlier checkpoint: train into a new directory"
        )
        return DamagedCheckpoint(f"checkpoint {step} in {self.directory} cannot be read ({reason}); {offer}")

    def set_aside(self, step: int) -> Path:
        """Move checkpoint ``step`` out of the run's checkpoints (to ``../damaged-checkpoints``),
        so the previous one is the newest; returns where it went."""
        target = self.directory.parent / "damaged-checkpoints" / str(step)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(target))
        self.manager.reload()
        return target

    def close(self) -> None:
        self.manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
