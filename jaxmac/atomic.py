"""Files written at once: a temporary file beside the target, then a rename (the lowest layer:
it imports nothing of jaxmac; run directories and the stored programs both write with it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``path`` replaced by ``data`` at once; a failed write (a full disk) leaves ``path`` as it
    was and no temporary file. The file gets the permissions a plain ``open`` would give it (the
    umask's), not the temporary file's owner-only ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
