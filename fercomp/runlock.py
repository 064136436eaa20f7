"""One writer per run folder: an advisory lock (filelock, flock(2) on POSIX) held while a process writes it.

The kernel drops the lock when its holder exits, however it exits, so a lock left by a crashed or
killed process is recovered by the next writer without any clean-up. The holder writes its pid
into the lock file, so a refused writer can say who has the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import filelock

from .errors import RunError

LOCK_FILE = ".lock"

# The locks this process holds, by folder: many Run objects of one folder share one lock.
_held: dict[Path, filelock.BaseFileLock] = {}


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def holder_pid(folder: str | Path) -> int | None:
    """The pid written by the process holding (or last holding) the folder's lock."""
    try:
        return int((Path(folder) / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def acquire(folder: str | Path) -> None:
    """Take the folder's lock for this process (a no-op if it holds it); RunError if another process does."""
    key = Path(folder).resolve()
    if key in _held:
        return
    lock = filelock.FileLock(key / LOCK_FILE, timeout=0, thread_local=False, on_acquired=_write_pid)
    try:
        lock.acquire()
    except filelock.Timeout:
        pid = holder_pid(key)
        raise RunError(f"{folder} is in use by {f'pid {pid}' if pid else 'another process'}; "
                       "wait for it to finish or stop it") from None
    _held[key] = lock


def release(folder: str | Path) -> None:
    lock = _held.pop(Path(folder).resolve(), None)
    if lock is not None:
        lock.release(force=True)


def holds(folder: str | Path) -> bool:
    return Path(folder).resolve() in _held


def is_locked_elsewhere(folder: str | Path) -> bool:
    """Whether another live process holds the folder's lock (a crashed holder's lock is free)."""
    if holds(folder) or not (Path(folder) / LOCK_FILE).exists():
        return False
    try:
        acquire(folder)
    except RunError:
        return True
    release(folder)
    return False
