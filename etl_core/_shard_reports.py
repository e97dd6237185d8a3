"""The shards' reports merged, for ``etl state show``: each shard's last run, and their total.

Each shard of a run writes its own report next to the run report, named after it
(``report-shard-1-of-4.json``). The shards of the newest split (the number of shards
whose reports were written last) are shown: a split into 4 shards replaced by one into 8
shows the 8.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any

from ._shard import Shard

#: The most of a report file read (a report is a few kilobytes).
_REPORT_MAX_BYTES = 1 << 20
#: What is shown of each shard's report.
_KEYS = ("run_id", "started_at", "finished_at", "duration_s", "exit_code", "interrupted_by", "aborted", "records")


def shard_summary(report_path: str, pipeline: str) -> dict[str, Any] | None:
    """Each shard's last run and their total, from the shards' reports next to ``report_path``.

    Args:
        report_path: The run report's path (``output.dir``/``output.report``).
        pipeline: Only reports of this pipeline count.

    Returns:
        None when no shard wrote a report there; else ``count`` (shards in the split),
        ``shards`` (one entry per shard, in order: ``shard`` "K/N" and the essentials of
        its report, or ``report`` None when that shard wrote none yet) and ``records``
        (the shards' counts added up).
    """
    directory, name = os.path.split(report_path)
    stem, extension = os.path.splitext(name)
    pattern = re.compile(re.escape(stem) + r"-shard-(\d+)-of-(\d+)" + re.escape(extension))
    found: dict[int, dict[int, dict[str, Any]]] = {}
    for path in glob.glob(os.path.join(glob.escape(directory), f"{glob.escape(stem)}-shard-*-of-*{glob.escape(extension)}")):
        match = pattern.fullmatch(os.path.basename(path))
        report = _read(path) if match else None
        if match is None or report is None or report.get("pipeline") != pipeline:
            continue
        index, count = int(match[1]), int(match[2])
        if index < count:
            found.setdefault(count, {})[index] = {**{key: report.get(key) for key in _KEYS}, "report": path}
    if not found:
        return None
    count = max(found, key=lambda n: max(str(entry["finished_at"]) for entry in found[n].values()))
    shards = [
        {"shard": str(Shard(index, count)), **found[count].get(index, {"report": None})} for index in range(count)
    ]
    records: dict[str, int] = {}
    for shard in shards:
        for outcome, number in (shard.get("records") or {}).items():
            if isinstance(number, int):
                records[outcome] = records.get(outcome, 0) + number
    return {"count": count, "shards": shards, "records": records}


def describe_shards(summary: dict[str, Any]) -> list[str]:
    """``etl state show``'s lines about the shards (see :func:`shard_summary`)."""

    def counts(records: dict[str, Any]) -> str:
        return ", ".join(f"{outcome} {number:,}" for outcome, number in records.items())

    lines = [f"shards: {summary['count']} (the last run of each, from its report)"]
    for shard in summary["shards"]:
        if shard["report"] is None:
            lines.append(f"  {shard['shard']}: no report yet (not run, killed, or running)")
            continue
        records = shard["records"] if isinstance(shard["records"], dict) else {}
        lines.append(
            f"  {shard['shard']}: run {shard['run_id']}, finished {shard['finished_at']}, exit code {shard['exit_code']}: "
            f"{counts(records)}"
        )
    lines.append(f"  total: {counts(summary['records'])}")
    return lines


def _read(path: str) -> dict[str, Any] | None:
    from ._regular_file import open_regular_file

    try:
        with open_regular_file(path) as file:
            report = json.loads(file.read(_REPORT_MAX_BYTES))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
