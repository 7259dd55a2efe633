"""Files written at once: a temporary file beside the target, then a rename (the lowest layer:
it imports nothing of jaxmac; run directories and the stored programs both write with it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: The process's umask, read once at import: reading it means setting it (``os.umask``), which
#: for that instant would hold for files other threads create too.
_UMASK = os.umask(0)
os.umask(_UMASK)


def plain_mode(directory: bool = False) -> int:
    """The permissions a plain ``open`` gives a new file (``mkdir`` a new directory): 0o666
    (0o777) less the umask; a temporary file or directory is made owner-only instead."""
    return (0o777 if directory else 0o666) & ~_UMASK


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``path`` replaced by ``data`` at once; a failed write (a full disk) leaves ``path`` as it
    was and no temporary file. The data reach the disk before the rename (``fsync``), so a
    power loss leaves the old file or the new one, never an empty one. The file gets the
    permissions a plain ``open`` would give it (the umask's), not the temporary file's
    owner-only ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, plain_mode())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
