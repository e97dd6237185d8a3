"""The connection options every HTTP sink takes, declared once."""

from __future__ import annotations

from typing import Annotated

import pydantic

from ._urls import check_http_url

#: ``base_url: discover``: the API host comes from the token (see :func:`find_api_host`).
DISCOVER = "discover"

ConnectTimeout = Annotated[float, pydantic.Field(default=10.0, gt=0, description="Seconds to wait for a connection.")]
MaxConnections = Annotated[
    int,
    pydantic.Field(default=100, ge=1, description="Most connections kept open to the API (and reused across requests)."),
]
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
