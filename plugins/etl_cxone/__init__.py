"""NICE CXone: the ``cxone`` sink, a reusable OAuth 2.0 token provider and a local sandbox."""

from __future__ import annotations

from etl_core import Sink, hookimpl

from ._auth import TokenProvider
from ._sink import CxoneOptions, CxoneSink

__all__ = ["CxoneOptions", "CxoneSink", "TokenProvider"]


@hookimpl
def register_sinks() -> list[type[Sink]]:
    return [CxoneSink]
