"""A generic ``http`` sink: records to any JSON REST API, one per request or in batches."""

from __future__ import annotations

from etl_core import Sink, hookimpl

from ._options import BatchOptions, HttpOptions, ResultsOptions
from ._sink import HttpSink

__all__ = ["BatchOptions", "HttpOptions", "HttpSink", "ResultsOptions"]


@hookimpl
def register_sinks() -> list[type[Sink]]:
    return [HttpSink]
