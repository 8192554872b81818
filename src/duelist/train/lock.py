"""One run per output folder: an exclusive lock file holding who runs there.

The lock is ``fcntl.flock`` on an open file, so the kernel releases it when the holder exits in any way,
``kill -9`` included: a lock file left behind by a killed run is stale and the next run takes it over.
The file also records the holder (pid, host, start time, command) so that a second run can say who is
in the way. ``flock`` is local to one machine; on a network file system shared by several machines the
recorded host is what tells runs apart, and the lock may not hold there (NFS emulates flock per server).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

LOCK_FILE = ".duelist.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the output folder's lock."""


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {started}"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunLock:
    """``with RunLock(folder): ...`` or ``acquire()`` / ``release()``. Creates ``folder`` if needed;
    ``release`` removes the lock file, and the folder too when the lock created it and it is still empty
    (a run that stops on bad data leaves nothing behind)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self._made_folder = False

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self._made_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(
                    f"{self.folder} is in use by {describe_holder(_read(self.path))}; wait for that run to finish, "
                    "stop it, or set another train.output_dir"
                ) from None
            # the holder may have removed the file between our open and our flock: then we locked an
            # orphan inode that nobody else will see, so start over on the path's current file
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: see the inode check in acquire
            if self._made_folder and self.folder.is_dir() and not any(self.folder.iterdir()):
                self.folder.rmdir()  # (a caller may have removed the folder itself: a temporary run)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(folder: str | Path) -> dict[str, Any] | None:
    """Who holds ``folder``'s lock now (pid, host, started, argv), or None if nobody does; creates nothing."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(path) or {}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def run_files(folder: str | Path) -> list[Path]:
    """What ``folder`` holds besides the lock (a new run needs this empty)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.name != LOCK_FILE) if folder.is_dir() else []


def clear_run(folder: str | Path) -> None:
    """Remove a run's files for ``--overwrite`` while keeping the lock file (and so the lock) in place:
    deleting the folder would let a second run create a new lock file and start beside this one."""
    import shutil

    for p in run_files(folder):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
