"""File and test sinks: ``jsonl`` writes one JSON object per line, ``discard`` only counts."""

from __future__ import annotations

import json
import os
from typing import Any

import pydantic

from etl_core import ConfigError, PluginOptions, Record, RunContext, SendResult, Sink, hookimpl


class JsonlOptions(PluginOptions):
    """Options of the ``jsonl`` sink."""

    path: str = pydantic.Field(description="The JSON Lines file; appended to, created with its directory if missing.")
    line_field: str = pydantic.Field("", description="Also write the input line number under this field (off when empty).")


class JsonlSink(Sink):
    """Append each record's fields as one JSON line to a file."""

    name = "jsonl"
    Options = JsonlOptions
    options: JsonlOptions

    def check(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.options.path))
        existing = parent
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or (os.path.isdir(parent) and not os.access(parent, os.W_OK)):
            raise ConfigError(f"cannot write {self.options.path!r}: {existing!r} is not a writable directory", path="sink.path")

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
        # Flushed before the runner records the record as delivered: a crash must not
        # leave checkpointed lines behind in a buffer.
        self._file.flush()
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
