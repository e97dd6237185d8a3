"""Opening an SQLite file in WAL mode, as several processes may at the same moment."""

from __future__ import annotations

import sqlite3
import time

#: Seconds between two tries of a switch to WAL that found the file locked.
_RETRY_EVERY = 0.01


def connect_wal(path: str, *, timeout: float = 30.0, check_same_thread: bool = True) -> sqlite3.Connection:
    """Connect to ``path`` in autocommit mode and put the file in WAL mode.

    Switching a new file to WAL needs it alone, and SQLite answers "database is locked"
    at once, without waiting, when another process switches it or writes to it at the
    same moment (shards of ``run.processes`` open the state together): the switch is
    tried again until ``timeout`` seconds have passed, as a busy file waits otherwise.

    Raises:
        sqlite3.Error: The file cannot be opened, or stayed locked for ``timeout`` seconds.
    """
    connection = sqlite3.connect(path, timeout=timeout, check_same_thread=check_same_thread, isolation_level=None)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return connection
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(_RETRY_EVERY)
    except BaseException:
        connection.close()
        raise
