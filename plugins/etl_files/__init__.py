"""File and test sinks: ``jsonl`` writes one JSON object per line, ``discard`` only counts."""

from __future__ import annotations

import json
import os
from typing import Any

from etl_core import PluginOptions, Record, RunContext, SendResult, Sink, hookimpl


class JsonlSink(Sink):
    """Append each record's fields as one JSON line to a file."""

    name = "jsonl"

    class Options(PluginOptions):
        path: str
        #: Write the input line number under this field (off when empty).
        line_field: str = ""

    async def open(self, context: RunContext) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.options.path)), exist_ok=True)
        # A plain buffered file: writes from concurrent workers must not interleave,
        # and a write into the buffer is far cheaper than a hop to a thread.
        self._file = open(self.options.path, "a", encoding="utf-8")

    async def send(self, record: Record) -> SendResult:
        data: dict[str, Any] = dict(record.data)
        if self.options.line_field:
            data[self.options.line_field] = record.line
        self._file.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        return SendResult()

    async def aclose(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()


class DiscardSink(Sink):
    """Accept every record and send it nowhere (a null sink, for trying mappings and measuring)."""

    # Not "null": YAML reads `type: null` as no value at all.
    name = "discard"

    async def send(self, record: Record) -> SendResult:
        return SendResult()


@hookimpl
def register_sinks() -> list[type[Sink]]:
    return [JsonlSink, DiscardSink]
