"""Opening an input file safely: a regular file only, never blocking on a pipe."""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

#: What a path that is not a regular file is, for messages.
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """The path names a directory, a named pipe, a device or a socket, not a regular file."""


def open_regular_file(path: str) -> BinaryIO:
    """Open ``path`` for reading in binary, unbuffered, refusing anything but a regular file.

    The file is opened without blocking, so a named pipe with no writer cannot hang the
    caller, and checked before a byte is read: a pipe or a device such as ``/dev/zero``
    could otherwise keep a run reading forever.

    Raises:
        NotRegularFileError: The path is not a regular file (its message says what it is).
        OSError: The file cannot be opened.
    """
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX; elsewhere there are no named pipes to open
    fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
            raise NotRegularFileError(errno.EINVAL, kind)
        if nonblocking:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def read_start(path: str, size: int, *, what: str) -> bytes:
    """Read at most ``size`` bytes from the start of the regular file ``path``.

    Args:
        path: The file.
        size: How many bytes at most.
        what: What the file is, for the message (``config file``).

    Raises:
        ConfigError: The file cannot be opened or read, or is not a regular file.
    """
    from ._errors import ConfigError

    try:
        with open_regular_file(path) as file:
            return file.read(size)
    except NotRegularFileError as exc:
        raise ConfigError(f"cannot read {what}: it is {exc.strerror}, not a regular file", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", source=path) from None
