"""The connection options every HTTP sink takes, declared once."""

from __future__ import annotations

from typing import Annotated

import pydantic

from ._urls import check_http_url

#: ``base_url: discover``: the API host comes from the token (see :func:`find_api_host`).
DISCOVER = "discover"

ConnectTimeout = Annotated[float, pydantic.Field(default=10.0, gt=0, description="Seconds to wait for a connection.")]
MaxConnections = Annotated[
    int | None,
    pydantic.Field(
        default=None,
        ge=1,
        description="Most connections kept open to the API (and reused across requests); by default one per "
        "concurrent send (`run.workers`, or `run.max_workers` with `workers: auto`).",
    ),
]
#: Connections when neither the option nor the run says how many requests go at once.
_DEFAULT_CONNECTIONS = 100


def connection_limit(max_connections: int | None, concurrency: int | None) -> int:
    """The API connections a sink opens at most: its ``max_connections`` option, else one
    per request the run sends at once (a request that waits for a connection is a worker idle)."""
    return max_connections or concurrency or _DEFAULT_CONNECTIONS


CaBundle = Annotated[
    str | None,
    pydantic.Field(
        default=None,
        description="PEM file of CA certificates to trust instead of the system's (certificates are still verified).",
    ),
]


def check_base_url(value: str) -> str:
    """Check a sink's ``base_url``: :data:`DISCOVER`, or an http(s) URL (see :func:`check_http_url`)."""
    return value if value == DISCOVER else check_http_url(value)
