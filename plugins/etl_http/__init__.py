"""A generic ``http`` sink: records to any JSON REST API, one per request or in batches."""

from __future__ import annotations

from etl_core import Sink, hookimpl

from ._options import BatchOptions, HttpOptions, ResultsOptions
from ._requests import RequestBuilder
from ._sink import HttpSink
from ._status import Action

__all__ = ["Action", "BatchOptions", "HttpOptions", "HttpSink", "RequestBuilder", "ResultsOptions"]


@hookimpl
def register_sinks() -> list[type[Sink]]:
    return [HttpSink]
