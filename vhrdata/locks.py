"""fcntl lock files that name their holder: one writer at a time for a store or a records folder.

The kernel drops a lock when its holder dies (kill -9 included), so a lock never outlives its process.
The holder writes "PID HOST" into the file, and a refused caller can say who holds it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: nothing is locked
    fcntl = None

from vhrdata.errors import VhrError


class LockBusy(VhrError):
    """Another process holds the lock.

    Attributes:
        holder: "pid N on HOST" (or "another process" when the file names nobody).
    """

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by {holder}")
        self.path = path
        self.holder = holder


def take_lock(path: str | Path, *, shared: bool = False, wait_s: float = 0.0) -> int | None:
    """Lock `path` (created if needed) and return its descriptor; release it with `release_lock`.

    Args:
        path: the lock file.
        shared: take a shared lock (several holders) instead of an exclusive one.
        wait_s: keep trying this long before giving up; 0 refuses at once.

    Returns:
        The open descriptor, or None where fcntl does not exist (nothing is locked there).

    Raises:
        LockBusy: another process holds a conflicting lock.
        OSError: the lock file cannot be created or opened (a read-only folder, for one).
    """
    if fcntl is None:
        return None
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    deadline = time.monotonic() + wait_s
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    while True:
        try:
            fcntl.flock(fd, mode)
            break
        except (BlockingIOError, PermissionError):
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = (f"pid {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "")) if holder else "another process"
            raise LockBusy(path, who) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return fd


def release_lock(fd: int | None) -> None:
    """Release a lock that `take_lock` returned (None is a no-op)."""
    if fd is not None:
        os.close(fd)
