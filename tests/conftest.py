import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Compiled programs go to a cache of this test session (shared by its workers), never the
# user's: a program compiled again (a resumed run, a CLI call after another) is reloaded.
if "PYTEST_XDIST_TESTRUNUID" in os.environ:
    _SESSION_CACHE = Path(tempfile.gettempdir()) / f"jaxmac-test-xla-{os.environ['PYTEST_XDIST_TESTRUNUID']}"
else:
    _SESSION_CACHE = Path(tempfile.mkdtemp(prefix="jaxmac-test-xla-"))
os.environ["JAXMAC_XLA_CACHE"] = str(_SESSION_CACHE)
# Most of the suite's programs run briefly, so their time is compiling: with XLA's optimisations
# off a training program compiles in about two thirds of the time (34 s -> 22 s for the tiny LLM4MAC
# chunk here) and runs slower. Every process a test starts inherits this; a test whose time is
# running asks for the ``optimized`` fixture.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

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
    """Tests marked ``slow`` (15 s or more on a 2-core CPU) run first, in their files' order:
    each worker starts on long tests and the quick ones are left to steal at the end, so no
    worker ends alone on a long test while the other waits. ``pytest -m "not slow"`` runs the
    rest alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session, exitstatus):
    """The controller (or a run without workers) removes the session's compilation cache."""
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
