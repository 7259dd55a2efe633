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

from jaxmac.compilation import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


def pytest_sessionfinish(session, exitstatus):
    """The controller (or a run without workers) removes the session's compilation cache."""
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
