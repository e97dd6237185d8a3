"""An exclusive lease on a run's output directory: one run at a time reads, sends and writes there.

The lease is an advisory lock (``flock``) on ``run.lock`` in the output directory, taken
before any file of the run is touched. The kernel releases it when its holder ends,
however it ends (``kill -9`` included), so a lease is never left behind by a dead run.
The file itself stays, and tells who holds the lease now: the host, the process id, the
run and when it started. It is never deleted: a run that deleted it could let two
others lock two different files of the same name.
"""

from __future__ import annotations

import datetime
import json
import os
import socket

from ._errors import ConfigError, RunLockedError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not kept apart
    fcntl = None  # type: ignore[assignment]

#: The lease file's name, in the output directory.
LEASE_FILE = "run.lock"


class RunLease:
    """The lease of one run; :meth:`release` it when the run's files are written.

    Use :func:`take_lease` to get one.
    """

    def __init__(self, fd: int | None, path: str) -> None:
        self._fd = fd
        self.path = path

    def release(self) -> None:
        """Give the lease up (closing the file releases the lock). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def take_lease(directory: str, *, pipeline: str, run_id: str) -> RunLease:
    """Take the lease of ``directory`` for this run, or fail at once if another run has it.

    Args:
        directory: The output directory (it exists).
        pipeline: The pipeline's name, written in the lease for whoever finds it taken.
        run_id: The run's id, likewise.

    Returns:
        The lease, held until :meth:`RunLease.release` or the end of the process.

    Raises:
        RunLockedError: Another live run holds it; the message names that run.
        ConfigError: The lease file cannot be opened (e.g. a symbolic link was planted there).
    """
    path = os.path.join(directory, LEASE_FILE)
    if fcntl is None:
        return RunLease(None, path)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open the run lease {path}: {exc.strerror}", path="output.dir") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = _read_holder(fd)
        os.close(fd)
        raise RunLockedError(
            f"another run is using the output directory {directory} ({who}): nothing was sent; "
            "let it finish, or stop it, and run again"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"cannot lock the run lease {path}: {exc.strerror}", path="output.dir") from None
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pipeline": pipeline,
        "run_id": run_id,
        "started_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    except OSError:
        pass  # the lock is what counts; the holder's description is a courtesy
    return RunLease(fd, path)


def _read_holder(fd: int) -> str:
    """Who holds the lease, as its file says (written by the holder when it took it)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        holder = None
    if not isinstance(holder, dict) or not holder:
        return "its process did not say which"
    return (
        f"process {holder.get('pid')} on {holder.get('host')}, run {holder.get('run_id')}, "
        f"started {holder.get('started_at')}"
    )
