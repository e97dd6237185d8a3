"""What happened to one record: its :class:`Outcome` and the :class:`Result` the ledger books."""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

#: Where in the pipeline a record got its outcome.
Stage = Literal["source", "transform", "pipeline", "sink"]


class Outcome(enum.StrEnum):
    """A record's final outcome in a run (the ``outcome`` of the ``record_done`` hook).

    A string enum: each member is its value (``Outcome.OK == "ok"``).
    """

    #: Delivered.
    OK = "ok"
    #: Refused by the source, a transform or the pipeline (e.g. a duplicate key); never sent.
    REJECTED = "rejected"
    #: Sent and refused for good, or given up after retries.
    FAILED = "failed"
    #: Done by an earlier run and unchanged since: not sent again.
    SKIPPED = "skipped"
    #: A dry run described the request instead of sending it.
    DRY_RUN = "dry_run"


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """One record's outcome with everything the ledger writes about it.

    Attributes:
        outcome: The outcome.
        stage: Where it was decided.
        plugin: The plugin (or pipeline rule) that decided it.
        status: The protocol status of the last answer (e.g. HTTP 404), if any.
        attempts: Send attempts made in this run (0: never sent in this run).
        reason: Why it was rejected or failed, in a few words.
        detail: The destination's own error detail, for the rejects file.
        retryable: A failure that a rerun sends again.
    """

    outcome: Outcome
    stage: Stage
    plugin: str
    status: int | None = None
    attempts: int = 0
    reason: str | None = None
    detail: str | None = None
    retryable: bool = False
