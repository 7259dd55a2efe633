"""JAX's persistent compilation cache for jaxmac's programs.

A compiled training or evaluation program is written to a cache directory and reloaded by
the next process that compiles the same program (same shapes, settings and jax version), so
``--resume``, a rerun and ``jaxmac eval --checkpoint`` skip the compile. The directory is
``$JAXMAC_XLA_CACHE`` if set (``off`` disables the cache), else ``$JAXMAC_CACHE/xla``
(``JAXMAC_CACHE`` defaults to ``~/.cache/jaxmac``, which also holds the word tokenizers).
The command line turns the cache on; a Python user calls ``enable_compilation_cache()``.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

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
