import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Compiled programs go to a cache of this test session, never the user's: a program compiled
# again (a resumed run, a CLI call after another) is reloaded. The controller (or a run without
# workers) makes the directory and removes it at the end; its workers inherit it through the
# environment.
_OWNS_CACHE = "JAXMAC_TEST_SESSION_CACHE" not in os.environ
if _OWNS_CACHE:
    os.environ["JAXMAC_TEST_SESSION_CACHE"] = tempfile.mkdtemp(prefix="jaxmac-test-xla-")
_SESSION_CACHE = Path(os.environ["JAXMAC_TEST_SESSION_CACHE"])
os.environ["JAXMAC_XLA_CACHE"] = str(_SESSION_CACHE)
# Most of the suite's programs run briefly, so their time is compiling: with XLA's optimisations
# off a training program compiles in about two thirds of the time (34 s -> 22 s for the tiny LLM4MAC
# chunk here) and runs slower. Every process a test starts inherits this; a test whose time is
# running asks for the ``optimized`` fixture.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# Without its optimisations XLA's CPU compiler spends most of a compile in its MLIR fusion
# emitters; its older emitters compile the same programs for about 40% less CPU time (the tiny
# LLM4MAC chunk: 27 s instead of 44 s here). With the optimisations on they save nothing.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_use_fusion_emitters=false".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

from jaxmac.compilation import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


@pytest.fixture
def optimized():
    """XLA's optimisations on for one test whose time is running its programs, not compiling."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (10 s or more on a 2-core CPU) run first on every worker. xdist's
    ``worksteal`` hands each of the N workers one contiguous block of the collection (``_blocks``)
    and lets an idle worker take the tail of another's queue, so each block starts with slow
    tests (a file's together, for its module fixtures; the files with the most first, each to
    the worker with the fewest so far) and quick ones fill the rest: every worker starts on long
    tests, and what is stolen at the end is quick. ``pytest -m "not slow"`` runs the quick ones."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    by_file: dict[Path, list] = {}
    for item in items:
        if item.get_closest_marker("slow") is not None:
            by_file.setdefault(item.path, []).append(item)
    dealt: list[list] = [[] for _ in range(workers)]
    for group in sorted(by_file.values(), key=len, reverse=True):
        min(dealt, key=len).extend(group)
    quick = [item for item in items if item.get_closest_marker("slow") is None]
    ordered = []
    for slow, size in zip(dealt, _blocks(len(items), workers), strict=True):
        fill = max(0, size - len(slow))
        ordered += slow + quick[:fill]
        del quick[:fill]
    items[:] = ordered + quick


def _blocks(count: int, workers: int) -> list[int]:
    """The sizes of the blocks ``worksteal`` first sends to ``workers`` idle workers."""
    sizes: list[int] = []
    for i in range(workers):
        sizes.append((count - sum(sizes)) // (workers - i))
    return sizes


def pytest_sessionfinish(session, exitstatus):
    """The process that made the session's compilation cache removes it."""
    if _OWNS_CACHE:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
