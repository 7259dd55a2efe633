"""Files of a run directory: written so that an interruption never leaves a half-written one,
and the lock that lets one process at a time write a run."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from jaxmac.atomic import write_bytes_atomic


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON to ``path`` via a temporary file and a rename: never a half-written file."""
    write_text_atomic(path, json.dumps(payload, indent=1))


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` replaced by ``text`` (UTF-8) at once (``jaxmac.atomic.write_bytes_atomic``)."""
    write_bytes_atomic(path, text.encode())


class RunLocked(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """An exclusive lock on a run directory for as long as a process writes it: an OS lock
    (``flock``) on ``DIR/.lock``, so it goes with the process however it ends. The file names
    the holder (pid, host, start time): a second writer is refused naming it, and a lock file
    left by a process that is gone is reported when it is taken over."""

    def __init__(self, directory: Path, log: Callable[[str], None] = print) -> None:
        self.path = Path(directory) / ".lock"
        self.log = log
        self.file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's life)
        file.seek(0)
        holder = file.read().strip()
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise RunLocked(
                f"{self.path.parent} is being written by another process ({holder or 'unknown'}); "
                "wait for it to end or stop it, or use another directory"
            ) from None
        if holder:
            self.log(f"{self.path.parent}: took over the lock left by a process that is gone ({holder})")
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        file.flush()
        self.file = file
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.file is not None:
            self.file.truncate(0)  # a clean exit leaves no holder behind
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None
