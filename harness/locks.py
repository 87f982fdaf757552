"""Per-job locks, so that any number of processes can work on one store at once.

Each job (training one run, selecting at one checkpoint, writing the tables) holds an
OS file lock (``filelock``, ``fcntl.flock`` on POSIX) while it checks what the store
holds and computes what is missing. The operating system drops the lock when its holder
dies, so a killed process never leaves a job stuck; a process that finds the lock held
waits, then finds the result already stored and counts it as done. On a file system
shared between machines the locks work where the file system supports ``flock`` (local
disks, NFSv4, Lustre and GPFS with locking enabled).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)



def lock_path(store_root: Path, *parts: str) -> Path:
    """``<store>/locks/<parts joined by '-'>.lock``: out of the run directories, so a job
    that fails leaves no half-made run behind."""
    return Path(store_root) / "locks" / ("-".join(parts) + ".lock")


@contextlib.contextmanager
def job_lock(path: Path, what: str, wait: bool = True) -> Iterator[bool]:
    """Hold the lock file ``path`` for the duration; ``what`` names the job in log lines.

    Yields True once held. With ``wait`` False a lock held elsewhere is not waited for:
    the body runs at once with False (and must then leave the job's files alone).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            yield False
            return
        log.info("waiting for another process to finish %s", what)
        lock.acquire()
    try:
        yield True
    finally:
        lock.release()
