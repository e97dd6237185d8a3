"""What the sandbox has seen: counters of requests and answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_PATHS", "Stats"]

#: Most distinct request targets remembered.
MAX_PATHS = 10_000


@dataclass(slots=True)
class Stats:
    """Counters since the sandbox started or since the last reset.

    Attributes:
        requests: API requests (every request outside ``/oauth/token`` and ``/sandbox/``).
        by_status: API answers by status code.
        token_requests: Requests to the token endpoints (``/oauth/token``, ``/auth/token``,
            the access-key endpoint and ``/public/user/refresh``).
        tokens_issued: Tokens issued.
        grants: Tokens issued by grant: ``client_credentials``, ``password``, ``refresh_token``,
            ``access_key`` and ``access_key_refresh``.
        max_concurrency: Most API requests in progress at once.
        updates: Applied PATCHes per contact id.
        applied: Applied PATCHes in all.
        paths: Distinct raw request targets outside ``/sandbox/`` (at most :data:`MAX_PATHS`).
        first_request_at: Sandbox clock at the first API request, or None.
        last_request_at: Sandbox clock at the last API request, or None.
        rate_limited: API requests refused by the rate limit.
        dropped: Connections closed without an answer.
    """

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    token_requests: int = 0
    tokens_issued: int = 0
    grants: dict[str, int] = field(default_factory=dict)
    max_concurrency: int = 0
    updates: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    paths: set[str] = field(default_factory=set)
    first_request_at: float | None = None
    last_request_at: float | None = None
    rate_limited: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable copy (status codes as strings, paths sorted)."""
        # Containers are copied before they are iterated: each copy is atomic, so this is
        # safe even from another thread while requests are served.
        return {
            "requests": self.requests,
            "by_status": {str(status): count for status, count in sorted(dict(self.by_status).items())},
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "grants": dict(self.grants),
            "max_concurrency": self.max_concurrency,
            "updates": dict(self.updates),
            "applied": self.applied,
            "paths": sorted(list(self.paths)),
            "first_request_at": self.first_request_at,
            "last_request_at": self.last_request_at,
            "rate_limited": self.rate_limited,
            "dropped": self.dropped,
        }
