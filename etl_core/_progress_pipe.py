"""A shard's progress snapshots, written to its parent (``run.processes``) through a pipe.

The parent draws one progress bar for all its shards from them (see ``_processes.py``).
"""

from __future__ import annotations

import json
from typing import Any

from .hookspecs import hookimpl


class ProgressPipe:
    """A plugin that writes each ``run_progress`` snapshot as one JSON line to a pipe.

    Args:
        fd: The pipe's writing end, inherited from the parent.
    """

    def __init__(self, fd: int) -> None:
        self._pipe: Any = open(fd, "w", encoding="utf-8", buffering=1)  # for the whole run

    @hookimpl
    def run_progress(self, run_id: str, snapshot: dict[str, Any]) -> None:
        """Pass the snapshot on to the parent; a parent gone away only ends the snapshots."""
        if self._pipe is None:
            return
        try:
            self._pipe.write(json.dumps(snapshot, default=str) + "\n")
        except (OSError, ValueError):
            self._pipe = None
