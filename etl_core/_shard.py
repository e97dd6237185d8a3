"""Shards: one run of a pipeline split over N processes or machines by the records' keys.

Shard K of N (``etl run CONFIG --shard K/N``, or ``ETL_SHARD=K/N``) handles the records
whose key hashes to K modulo N. The hash is BLAKE2b of the key's UTF-8 bytes, never
Python's ``hash()`` (randomized per process): every process on every machine puts a
key in the same shard, so a key is sent by one shard only, its duplicates meet in that
shard, and its updates keep their input order.

Records without a key (unreadable rows, rows refused before their key was set) belong
to shard 0, so that they are rejected once, not once per shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._state_store import StateBackend as StateStore

#: The environment variable that names a run's shard when ``--shard`` does not.
SHARD_VARIABLE = "ETL_SHARD"
#: The most shards a run may be split into.
MAX_SHARDS = 4096

#: Why a pipeline without a ``key`` cannot be split into shards.
SHARD_NEEDS_KEY = "is not set: a run split into shards (--shard, run.processes) needs a key to give each record its shard"

_SHARD_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclasses.dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count).

    Attributes:
        index: This shard's number, from 0.
        count: How many shards the run is split into.
    """

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str | None) -> bool:
        """Whether this shard handles the record with ``key`` (None: a record without one)."""
        return (0 if key is None else shard_of(key, self.count)) == self.index

    def file_name(self, name: str) -> str:
        """``name`` made this shard's own: ``report.json`` -> ``report-shard-1-of-4.json``.

        The shard goes before the last extension, in the file's name only (not its directory).
        """
        directory, base = os.path.split(name)
        stem, extension = os.path.splitext(base)
        return os.path.join(directory, f"{stem}-shard-{self.index}-of-{self.count}{extension}")


def shard_of(key: str, count: int) -> int:
    """The shard (0 to ``count`` - 1) of ``key``: the same in every process and on every machine.

    Args:
        key: The record's key, as text.
        count: How many shards there are.
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def parse_shard(text: str) -> Shard:
    """Read ``K/N``: shard K (from 0) of N.

    Raises:
        ValueError: ``text`` is not two whole numbers with 0 <= K < N <= :data:`MAX_SHARDS`;
            the message says what is expected.
    """
    match = _SHARD_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not K/N (shard K of N, counted from 0: 0/4, 1/4, 2/4, 3/4)")
    index, count = int(match[1]), int(match[2])
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"{text!r}: the number of shards must be from 1 to {MAX_SHARDS}")
    if index >= count:
        raise ValueError(f"{text!r}: the shard must be from 0 to {count - 1} (shards are counted from 0)")
    return Shard(index, count)


def resolve_shard(option: Shard | None, environ: Mapping[str, str]) -> Shard | None:
    """The run's shard: ``--shard`` if given, else :data:`SHARD_VARIABLE`, else None.

    Raises:
        ConfigError: The variable is set but is not a valid ``K/N``.
    """
    if option is not None:
        return option
    text = environ.get(SHARD_VARIABLE, "").strip()
    if not text:
        return None
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise ConfigError(f"{SHARD_VARIABLE}: {exc}") from None


def shard_report(shard: Shard | None, other_shards: int) -> dict[str, int] | None:
    """The run report's ``shard``: which shard ran, and how many records read were other shards'.

    Args:
        shard: The run's shard, or None for a run of every record (then the result is None).
        other_shards: Records read that belong to other shards (not counted in ``records``).
    """
    if shard is None:
        return None
    return {"index": shard.index, "count": shard.count, "other_shards": other_shards}


def forget_shard(state: StateStore, shard: Shard) -> int:
    """Forget the checkpoints of ``shard``'s keys (``--fresh``), leaving the other shards' alone.

    Returns:
        How many checkpoints were forgotten.

    Raises:
        StateError: The state cannot be read or written.
    """
    return len(state.forget_keys([key for key in state.keys() if shard.owns(key)]))
