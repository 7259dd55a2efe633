"""JAX's persistent compilation cache for jaxmac's programs.

A compiled training or evaluation program is written to a cache directory and reloaded by
the next process that compiles the same program (same shapes, settings and jax version), so
``--resume``, a rerun and ``jaxmac eval --checkpoint`` skip the compile. The directory is
``$JAXMAC_XLA_CACHE`` if set (``off`` disables the cache), else ``$JAXMAC_CACHE/xla``
(``JAXMAC_CACHE`` defaults to ``~/.cache/jaxmac``, which also holds the word tokenizers).
The command line turns the cache on; a Python user calls ``enable_compilation_cache()``.

Beside it, ``exported/`` keeps stored programs (``compile_stored``): a training chunk traced,
lowered and exported with ``jax.export`` under a key of everything it was made from, so a later
process skips the Python tracing too, which the XLA cache does not save.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export

from jaxmac.atomic import write_bytes_atomic

#: Programs that compile faster than this (seconds) are not written to the cache.
MIN_COMPILE_SECONDS = 0.5


def cache_root() -> Path:
    """jaxmac's cache directory: ``$JAXMAC_CACHE``, default ``~/.cache/jaxmac``."""
    return Path(os.environ.get("JAXMAC_CACHE", Path.home() / ".cache" / "jaxmac")).expanduser()


def compilation_cache_dir() -> Path | None:
    """The cache directory the environment selects, or None if ``JAXMAC_XLA_CACHE=off``."""
    chosen = os.environ.get("JAXMAC_XLA_CACHE")
    if chosen is not None:
        return None if chosen.strip().lower() == "off" else Path(chosen).expanduser()
    return cache_root() / "xla"


def enable_compilation_cache(directory: Path | str | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``directory`` (default
    ``compilation_cache_dir()``); returns the directory used, or None when disabled."""
    path = Path(directory).expanduser() if directory is not None else compilation_cache_dir()
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path


# ------------------------------------------------------------------------ stored programs

#: Arrays with more elements than this enter ``fingerprint`` by shape and dtype only: they are
#: weights (Flan-T5-small's smallest matrix has 196,608), which a training chunk takes from its
#: state, never as constants; the prompt tables and candidates it does hold are a few hundred.
FINGERPRINT_MAX_ELEMENTS = 1 << 16
#: The packages whose code is traced into jaxmac's programs.
TRACED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "flashbax", "numpy", "transformers")


def _feed(digest: Any, obj: Any, seen: dict[int, int]) -> None:
    """Adds ``obj`` to ``digest``: arrays and NumPy scalars by content (see
    ``FINGERPRINT_MAX_ELEMENTS``), scalars and strings by value, classes and functions by
    qualified name, dataclasses, mappings and sequences by their items, any other object (a
    tokenizer, a model graph) by its type's qualified name."""
    if isinstance(obj, str | int | float | bool | type(None)):
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())
        return
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        digest.update(f"{getattr(obj, '__module__', '')}.{obj.__qualname__};".encode())
        return
    if isinstance(obj, np.generic):
        obj = np.asarray(obj)
    if isinstance(obj, np.ndarray | jax.Array):
        digest.update(f"array{obj.shape}{obj.dtype};".encode())
        if obj.size <= FINGERPRINT_MAX_ELEMENTS and not isinstance(obj, jax.core.Tracer):
            digest.update(np.ascontiguousarray(np.asarray(obj)).tobytes())
        return
    if id(obj) in seen:  # a shared object counts once, then by its first place
        digest.update(f"seen#{seen[id(obj)]};".encode())
        return
    seen[id(obj)] = len(seen)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items: Any = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    elif isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: repr(kv[0]))
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        digest.update(f"{type(obj).__module__}.{type(obj).__qualname__};".encode())
        return
    digest.update(f"{type(obj).__qualname__}(".encode())
    for name, value in items:
        digest.update(f"{name}=".encode())
        _feed(digest, value, seen)
    digest.update(b")")


def fingerprint(*objects: Any) -> str:
    """A hex digest of ``objects`` (``_feed``): equal for a configuration, its agent's prompt
    tables and candidates, and arguments of the same shapes, dtypes and shardings."""
    digest = hashlib.sha256()
    _feed(digest, objects, {})
    return digest.hexdigest()


def _code_fingerprint() -> str:
    """jaxmac's source files and the traced packages' versions, as imported (``CODE_FINGERPRINT``):
    a program stored by other code is never called."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name in TRACED_PACKAGES:
        try:
            digest.update(f"{name}={metadata.version(name)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none;".encode())
    return digest.hexdigest()


CODE_FINGERPRINT = _code_fingerprint()


def _context_fingerprint() -> str:
    """What else a trace depends on: jax's settings (x64, matmul precision, ...), the platform,
    and the devices and processes a program runs on."""
    settings = sorted((k, repr(v)) for k, v in jax.config.values.items())
    devices = [(d.platform, d.device_kind, d.id, d.process_index) for d in jax.devices()]
    return fingerprint(settings, devices, jax.process_count())


def stored_programs_dir() -> Path | None:
    """Where exported programs are kept: ``exported/`` in jax's persistent cache directory,
    or None when that cache is off."""
    cache = jax.config.jax_compilation_cache_dir
    return Path(cache) / "exported" if cache else None


def compile_stored(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    key: Callable[[], str],
    *,
    donate_argnums: tuple[int, ...] = (),
    out_shardings: Any = None,
) -> jax.stages.Compiled:
    """``jax.jit(fn, ...).lower(*args).compile()``, without tracing ``fn`` when a program
    stored under ``key`` (plus jaxmac's code and jax's context) exists: the stored program is
    called instead (its compile then comes from the persistent cache). Otherwise ``fn`` is
    traced, exported and stored. ``key()`` (called only when a store is used) must name
    everything ``fn`` closes over that is not in ``args`` (``fingerprint``). ``args`` must be
    lists, tuples, string-keyed dicts and arrays (``jax.export``'s serialisable trees). With
    the cache off, or over several processes, this is the plain compile; a store that cannot be
    written is a warning."""
    jitted = jax.jit(fn, donate_argnums=donate_argnums, out_shardings=out_shardings)
    directory = stored_programs_dir()
    if directory is None or jax.process_count() > 1:
        return jitted.lower(*args).compile()
    name = fingerprint(key(), CODE_FINGERPRINT, _context_fingerprint(), signature(args))
    path = directory / f"{name}.exported"
    try:
        exported = export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # none stored, or not a whole program (a damaged file): export it again
        exported = None
    if exported is None:
        exported = export.export(jitted)(*args)
        try:  # at once: a reader sees a whole program or none
            write_bytes_atomic(path, exported.serialize())
        except OSError as e:  # like the XLA cache: a cache that cannot be written costs time only
            warnings.warn(f"the program could not be stored in {directory}: {e}", stacklevel=2)
    stored = jax.jit(exported.call, donate_argnums=donate_argnums, out_shardings=out_shardings)
    return stored.lower(*args).compile()


def signature(args: Any) -> str:
    """The arguments' structure, shapes, dtypes and shardings (not their values)."""
    leaves, tree = jax.tree.flatten(args)
    avals = [
        (np.shape(x), str(getattr(x, "dtype", type(x))), str(getattr(x, "sharding", None))) for x in leaves
    ]
    return repr((str(tree), avals))
