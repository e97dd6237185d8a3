"""The run lease a state store gives: one holder at a time per pipeline (or per shard of it).

Both stores hold the lease with a lock that dies with its holder, however it ends
(``kill -9`` included): the SQLite store an ``flock`` on a file next to its database,
the PostgreSQL store a session advisory lock, released when its connection closes.
Whoever finds the lease taken is told who holds it: the host, the process, the run and
when it started.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import socket
from typing import Any

from ._errors import RunLockedError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not kept apart
    fcntl = None  # type: ignore[assignment]

#: What a lease's name may hold: it is part of a file name.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def lease_id(pipeline: str, name: str | None) -> str:
    """The lease's identity in a store: the pipeline's, or one part of it (``name``, e.g. a shard).

    Raises:
        ValueError: ``name`` holds something else than letters, digits, ``_``, ``.`` and ``-``.
    """
    if name is None:
        return pipeline
    if not _NAME.fullmatch(name):
        raise ValueError(f"a lease name holds only letters, digits, '_', '.' and '-': {name!r}")
    return f"{pipeline}.{name}"


def holder(pipeline: str, run_id: str) -> dict[str, Any]:
    """Who takes a lease now: written where the next taker can read it."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pipeline": pipeline,
        "run_id": run_id,
        "started_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def refused(what: str, who: dict[str, Any] | None) -> RunLockedError:
    """The error of a lease found taken (exit code 73), naming its holder."""
    described = (
        f"process {who.get('pid')} on {who.get('host')}, run {who.get('run_id')}, started {who.get('started_at')}"
        if who else "its process did not say which"
    )
    return RunLockedError(
        f"another run is using {what} ({described}): nothing was sent; let it finish, or stop it, and run again"
    )


class FileLease:
    """A lease held with ``flock`` on files; :meth:`release` gives it up (so does the holder's end)."""

    def __init__(self, fds: list[int]) -> None:
        self._fds = fds

    def release(self) -> None:
        """Give the lease up. Safe to call twice."""
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


def take_file_lease(paths: list[str], *, what: str, pipeline: str, run_id: str) -> FileLease:
    """Lock ``paths`` (created if missing, never through a symbolic link), or fail at once.

    The last path is locked exclusively, and says who holds it; the others are shared
    (a shard's share of its pipeline's lease).

    Raises:
        RunLockedError: Another live process holds one of them.
        OSError: A file cannot be opened or locked.
    """
    if fcntl is None:
        return FileLease([])
    lease = FileLease([])
    try:
        for number, path in enumerate(paths, 1):
            exclusive = number == len(paths)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
            lease._fds.append(fd)
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    who = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "null")
                except (OSError, ValueError):
                    who = None
                raise refused(what, who if isinstance(who, dict) else None) from None
            with contextlib.suppress(OSError):  # the lock is what counts; who holds it is a courtesy
                os.ftruncate(fd, 0)  # a shared lease's holders do not say who they are
                if exclusive:
                    os.pwrite(fd, (json.dumps(holder(pipeline, run_id)) + "\n").encode(), 0)
    except BaseException:
        lease.release()
        raise
    return lease
