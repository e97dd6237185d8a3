"""An exclusive lease on a run's output directory: one run at a time reads, sends and writes there.

The lease is an advisory lock (``flock``) on ``run.lock`` in the output directory, taken
before any file of the run is touched. The kernel releases it when its holder ends,
however it ends (``kill -9`` included), so a lease is never left behind by a dead run.
The file itself stays, and tells who holds the lease now: the host, the process id, the
run and when it started. It is never deleted: a run that deleted it could let two
others lock two different files of the same name.

A shard of a run (``--shard K/N``) holds ``run.lock`` shared, with the other shards,
and its own ``run-shard-K-of-N.lock`` exclusively: the shards of one run work side by
side, while a run of every record and two processes of the same shard are kept apart.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import socket
from typing import TYPE_CHECKING

from ._errors import ConfigError, RunLockedError

if TYPE_CHECKING:
    from ._shard import Shard

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not kept apart
    fcntl = None  # type: ignore[assignment]

#: The lease file's name, in the output directory.
LEASE_FILE = "run.lock"
#: The shards' own leases (``run-shard-K-of-N.lock``), as a glob pattern.
SHARD_LEASES = "run-shard-*-of-*.lock"


class RunLease:
    """The lease of one run; :meth:`release` it when the run's files are written.

    Use :func:`take_lease` to get one.
    """

    def __init__(self, fd: int | None, path: str) -> None:
        self._fd = fd
        self.path = path
        self._with: RunLease | None = None

    def also_release(self, other: RunLease) -> None:
        """Release ``other`` with this lease (a shard's share of the whole run's lease)."""
        self._with = other

    def release(self) -> None:
        """Give the lease up (closing the file releases the lock). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self._with is not None:
            self._with.release()


def take_lease(directory: str, *, pipeline: str, run_id: str, shard: Shard | None = None) -> RunLease:
    """Take the lease of ``directory`` for this run, or fail at once if another run has it.

    Args:
        directory: The output directory (it exists).
        pipeline: The pipeline's name, written in the lease for whoever finds it taken.
        run_id: The run's id, likewise.
        shard: A shard's run: ``run.lock`` shared with the other shards, and the
            shard's own lease exclusively.

    Returns:
        The lease, held until :meth:`RunLease.release` or the end of the process.

    Raises:
        RunLockedError: Another live run holds it; the message names that run.
        ConfigError: The lease file cannot be opened (e.g. a symbolic link was planted there).
    """
    path = os.path.join(directory, LEASE_FILE)
    if fcntl is None:
        return RunLease(None, path)
    if shard is None:
        return _lock(directory, path, exclusive=True, pipeline=pipeline, run_id=run_id)
    whole = _lock(directory, path, exclusive=False, pipeline=pipeline, run_id=run_id)
    try:
        own = _lock(directory, os.path.join(directory, shard.file_name(LEASE_FILE)), exclusive=True, pipeline=pipeline, run_id=run_id)
    except BaseException:
        whole.release()
        raise
    own.also_release(whole)
    return own


def _lock(directory: str, path: str, *, exclusive: bool, pipeline: str, run_id: str) -> RunLease:
    """Lock the lease file ``path``, exclusively (and say who holds it there) or shared."""
    assert fcntl is not None
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open the run lease {path}: {exc.strerror}", path="output.dir") from None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        who = _read_holder(fd)
        if exclusive and os.path.basename(path) == LEASE_FILE:  # held by a run, or shared by shards
            who = _shard_holders(directory) or who
        os.close(fd)
        raise RunLockedError(
            f"another run is using the output directory {directory} ({who}): nothing was sent; "
            "let it finish, or stop it, and run again"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"cannot lock the run lease {path}: {exc.strerror}", path="output.dir") from None
    if not exclusive:
        return RunLease(fd, path)  # shared by the shards: each says who it is in its own lease
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


def _shard_holders(directory: str) -> str:
    """Who holds the shards' leases in ``directory`` (empty when no shard runs there)."""
    assert fcntl is not None
    holders = []
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), SHARD_LEASES))):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: that shard runs
            holders.append(f"{os.path.basename(path)}: {_read_holder(fd)}")
        except OSError:
            pass
        finally:
            os.close(fd)
    return "; ".join(holders)


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
