"""A local, CXone-like HTTP API for demos, tests and benchmarks.

The sandbox implements the small part of the NICE CXone API that the contact sink uses:

* ``POST /oauth/token``: OAuth 2.0 client-credentials grant (HTTP Basic auth or form fields).
* ``PATCH /api/v2/contacts/{id}``: partial update of a contact (field validation, 404 for
  unknown ids, 401 for missing or expired tokens).
* ``GET /api/v2/contacts/{id}``: the current fields of a contact.

It also has knobs to make it misbehave the way a real tenant does: a token-bucket rate limit
answered with ``429`` and ``Retry-After`` (seconds or HTTP-date), added latency, random 5xx
answers, dropped connections after an update was applied, a full outage, and short-lived
tokens. Knobs can be changed while it runs, from Python (``sandbox.settings.outage = True``)
or over HTTP (``POST /sandbox/settings``); ``GET /sandbox/stats`` shows what it saw.

Seeded contacts are ``contact_id(0)`` .. ``contact_id(seed_count - 1)``: deterministic UUIDs,
so a CSV file can be generated that matches them (see :mod:`etl_cxone.sample_data`).

Run it from the command line with ``etl sandbox cxone`` or ``python -m etl_cxone.sandbox``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, unquote_plus

import trio

from ._sandbox_http import DROP, Request, Response, http_date, json_response, serve_connection

__all__ = [
    "CONTACT_FIELDS",
    "NAMESPACE",
    "Sandbox",
    "SandboxSettings",
    "add_arguments",
    "contact_id",
    "main",
    "open_sandbox",
    "run_sandbox_in_thread",
    "serve_forever",
    "settings_from_args",
]

#: Namespace of the deterministic contact ids (``uuid5(NAMESPACE, f"contact-{i}")``).
NAMESPACE = uuid.UUID("e939f681-8060-5d64-a544-d97988252da1")

#: Fields a contact PATCH may set.
CONTACT_FIELDS = ("firstName", "lastName", "email", "phone", "city", "country", "externalId")

_CONTACTS_PREFIX = b"/api/v2/contacts/"
_MAX_PATHS = 10_000
_MAX_TOKENS = 10_000
_RETRY_AFTER_FORMS = ("seconds", "http-date", "none")
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_T = TypeVar("_T")


def contact_id(i: int) -> str:
    """Return the id of the ``i``-th seeded contact.

    Args:
        i: Index of the contact, from 0.

    Returns:
        ``str(uuid.uuid5(NAMESPACE, f"contact-{i}"))``.
    """
    return str(uuid.uuid5(NAMESPACE, f"contact-{i}"))


# Index of the seeded ids, shared by all sandboxes of the process and grown on demand
# (computing 100,000 UUIDs takes a noticeable fraction of a second).
_seed_lock = threading.Lock()
_seed_index: dict[str, int] = {}
_seed_count = 0


def _ensure_seeded(count: int) -> None:
    global _seed_count
    if count <= _seed_count:
        return
    with _seed_lock:
        prefix = NAMESPACE.bytes
        sha1 = hashlib.sha1
        index = _seed_index
        for i in range(_seed_count, count):
            # Same bytes as uuid.uuid5(), without building a UUID object per id.
            digest = bytearray(sha1(prefix + b"contact-%d" % i).digest()[:16])
            digest[6] = (digest[6] & 0x0F) | 0x50
            digest[8] = (digest[8] & 0x3F) | 0x80
            h = digest.hex()
            index[f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"] = i
        _seed_count = max(_seed_count, count)


@dataclass
class SandboxSettings:
    """Knobs of the sandbox. Fields may be changed while the sandbox runs.

    Attributes:
        host: Address to listen on.
        port: Port to listen on; 0 picks a free port.
        client_id: The only accepted OAuth client id.
        client_secret: The only accepted OAuth client secret.
        required_scope: Scope(s), space separated, a token request must include.
        token_lifetime: Lifetime of issued tokens in seconds (``expires_in``).
        rate_limit: API requests per second allowed (token bucket); None for unlimited.
        burst: Bucket size; None for ``max(1, rate_limit / 10)``.
        retry_after: Form of ``Retry-After`` on 429: ``"seconds"``, ``"http-date"`` or
            ``"none"``.
        rate_limit_headers: Send ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
            ``X-RateLimit-Reset`` on API responses (when a rate limit is set).
        latency: Seconds added before each API response.
        error_rate: Share of API requests answered with a random 500/502/503/504 (not applied).
        drop_rate: Share of PATCHes applied and then answered by closing the connection.
        outage: Answer 503 (no ``Retry-After``) to every API request while True.
        seed_count: Contacts ``contact_id(0)`` .. ``contact_id(seed_count - 1)`` exist.
        extra_ids: More contact ids that exist.
        random_seed: Seed of the random choices (error_rate, drop_rate); None for random.
    """

    host: str = "127.0.0.1"
    port: int = 0
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    required_scope: str = "contact:write"
    token_lifetime: float = 3600.0
    rate_limit: float | None = None
    burst: float | None = None
    retry_after: str = "seconds"
    rate_limit_headers: bool = False
    latency: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    outage: bool = False
    seed_count: int = 100_000
    extra_ids: tuple[str, ...] = ()
    random_seed: int | None = None

    def __post_init__(self) -> None:
        self.extra_ids = tuple(self.extra_ids)
        errors = _validate_settings(dataclasses.asdict(self))
        if errors:
            raise ValueError(
                "invalid sandbox settings: "
                + "; ".join(f"{name}: {message}" for name, message in errors.items())
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _validate_settings(values: dict[str, Any]) -> dict[str, str]:
    """Check setting values by name; returns ``{name: problem}`` (empty when all are fine)."""
    known = {f.name for f in dataclasses.fields(SandboxSettings)}
    errors: dict[str, str] = {}
    for name, value in values.items():
        if name not in known:
            errors[name] = "unknown setting"
        elif name in ("host", "client_id", "client_secret", "required_scope"):
            if not isinstance(value, str):
                errors[name] = "must be a string"
        elif name in ("port", "seed_count"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors[name] = "must be a non-negative integer"
        elif name in ("token_lifetime", "latency"):
            if not _is_number(value) or value < 0:
                errors[name] = "must be a non-negative number"
        elif name == "rate_limit":
            if value is not None and (not _is_number(value) or value <= 0):
                errors[name] = "must be a positive number or null"
        elif name == "burst":
            if value is not None and (not _is_number(value) or value < 1):
                errors[name] = "must be a number >= 1 or null"
        elif name == "retry_after":
            if value not in _RETRY_AFTER_FORMS:
                errors[name] = "must be one of " + ", ".join(_RETRY_AFTER_FORMS)
        elif name in ("rate_limit_headers", "outage"):
            if not isinstance(value, bool):
                errors[name] = "must be a boolean"
        elif name in ("error_rate", "drop_rate"):
            if not _is_number(value) or not 0 <= value <= 1:
                errors[name] = "must be a number between 0 and 1"
        elif name == "extra_ids":
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                errors[name] = "must be a list of strings"
        elif name == "random_seed":
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                errors[name] = "must be an integer or null"
    return errors


class _Bucket:
    """Token bucket: ``rate`` tokens per second, at most ``capacity``, starting full."""

    __slots__ = ("capacity", "limit_header", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.stamp = now
        self.limit_header = (f"{rate:.0f}" if rate == int(rate) else f"{rate:g}").encode()

    def take(self, now: float) -> float:
        """Take one token; returns 0 on success, else the seconds until one is available."""
        elapsed = now - self.stamp
        tokens = self.tokens
        if elapsed > 0:
            tokens += elapsed * self.rate
            if tokens > self.capacity:
                tokens = self.capacity
            self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``X-RateLimit-*`` headers describing the bucket after the last take()."""
        reset = math.ceil((self.capacity - self.tokens) / self.rate)
        return [
            (b"x-ratelimit-limit", self.limit_header),
            (b"x-ratelimit-remaining", b"%d" % int(self.tokens)),
            (b"x-ratelimit-reset", b"%d" % reset),
        ]


_STATS_EMPTY = {
    "requests": 0,
    "token_requests": 0,
    "tokens_issued": 0,
    "applied": 0,
    "rate_limited": 0,
    "dropped": 0,
}


class Sandbox:
    """A running sandbox server (returned by :func:`open_sandbox` and
    :func:`run_sandbox_in_thread`).

    Attributes:
        url: Base URL, e.g. ``"http://127.0.0.1:41234"``.
        settings: The live knobs; changes take effect for the next request.
    """

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        """Create the sandbox state (it does not listen until opened).

        Args:
            settings: Knobs; defaults when None.
        """
        self.settings = settings if settings is not None else SandboxSettings()
        self.url = ""
        self._clock_offset = 0.0
        self._tokens: dict[str, float] = {}
        self._contacts: dict[str, dict[str, str]] = {}
        self._bucket: _Bucket | None = None
        self._bucket_key: tuple[float, float] | None = None
        self._random_seed = self.settings.random_seed
        self._random = random.Random(self._random_seed)
        self._extra_key: tuple[str, ...] | None = None
        self._extra_set: frozenset[str] = frozenset()
        self._inflight = 0
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._loop_thread: int | None = None
        self._reset_stats()

    # ----------------------------------------------------------------- public helpers

    def stats(self) -> dict[str, Any]:
        """Return what the sandbox has seen since it started or since the last reset.

        Returns:
            A JSON-serialisable dict: ``requests`` (API requests: every request outside
            ``/oauth/token`` and ``/sandbox/``), ``by_status`` (of API responses,
            ``{"200": n, ...}``), ``token_requests``, ``tokens_issued``, ``max_concurrency``
            (most API requests in progress at once), ``updates`` (``{id: applied PATCHes}``),
            ``applied``, ``paths`` (sorted distinct raw request targets outside
            ``/sandbox/``, at most 10,000), ``first_request_at`` / ``last_request_at``
            (sandbox monotonic clock, seconds, or None), ``rate_limited`` and ``dropped``.
        """
        return self._in_loop(self._stats_now)

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        """Return the current fields of a contact.

        Args:
            contact_id: The contact id (decoded, as in the URL path segment).

        Returns:
            ``{"contactId": contact_id, ...fields}`` as GET returns it, or None when the id
            does not exist.
        """
        return self._in_loop(partial(self._contact_now, contact_id))

    def reset_stats(self) -> None:
        """Forget all statistics (contacts keep their fields, tokens stay valid)."""
        self._in_loop(self._reset_stats)

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward, as if time had passed.

        The clock drives token expiry, the rate-limit bucket and the stats timestamps, so tests
        can expire a token or refill the bucket without sleeping.

        Args:
            seconds: How far to move the clock (non-negative).
        """
        if seconds < 0:
            raise ValueError("the sandbox clock cannot go backwards")
        self._clock_offset += seconds

    def now(self) -> float:
        """Return the sandbox clock: ``time.monotonic()`` plus any :meth:`advance_clock`."""
        return time.monotonic() + self._clock_offset

    # ----------------------------------------------------------------- internals

    def _in_loop(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` in the thread that serves requests (it owns the state)."""
        token = self._trio_token
        if token is None or threading.get_ident() == self._loop_thread:
            return fn()
        try:
            return trio.from_thread.run_sync(fn, trio_token=token)
        except trio.RunFinishedError:
            return fn()
        except RuntimeError:
            # Called from inside some other Trio run: cannot block; the copies are atomic.
            return fn()

    def _reset_stats(self) -> None:
        for name, value in _STATS_EMPTY.items():
            setattr(self, "_" + name, value)
        self._by_status: dict[int, int] = {}
        self._updates: dict[str, int] = {}
        self._paths: set[str] = set()
        self._first_request_at: float | None = None
        self._last_request_at: float | None = None
        self._max_concurrency = self._inflight

    def _stats_now(self) -> dict[str, Any]:
        by_status = dict(self._by_status)
        return {
            "requests": self._requests,
            "by_status": {str(k): v for k, v in sorted(by_status.items())},
            "token_requests": self._token_requests,
            "tokens_issued": self._tokens_issued,
            "max_concurrency": self._max_concurrency,
            "updates": dict(self._updates),
            "applied": self._applied,
            "paths": sorted(list(self._paths)),
            "first_request_at": self._first_request_at,
            "last_request_at": self._last_request_at,
            "rate_limited": self._rate_limited,
            "dropped": self._dropped,
        }

    def _contact_now(self, cid: str) -> dict[str, Any] | None:
        if not self._exists(cid):
            return None
        return {"contactId": cid, **self._contacts.get(cid, {})}

    def _exists(self, cid: str) -> bool:
        settings = self.settings
        count = settings.seed_count
        if count > _seed_count:
            _ensure_seeded(count)
        index = _seed_index.get(cid)
        if index is not None and index < count:
            return True
        extra = settings.extra_ids
        if extra is not self._extra_key:
            self._extra_key = extra
            self._extra_set = frozenset(extra)
        return cid in self._extra_set

    def _rng(self) -> random.Random:
        seed = self.settings.random_seed
        if seed != self._random_seed:
            self._random_seed = seed
            self._random = random.Random(seed)
        return self._random

    def _get_bucket(self, rate: float, now: float) -> _Bucket:
        burst = self.settings.burst
        key = (rate, burst if burst is not None else max(1.0, rate / 10.0))
        if key != self._bucket_key or self._bucket is None:
            self._bucket = _Bucket(key[0], key[1], now)
            self._bucket_key = key
        return self._bucket

    async def _handle(self, request: Request) -> Response | Any:
        target = request.target
        if target.startswith(b"/sandbox/"):
            return self._control(request)
        paths = self._paths
        if len(paths) < _MAX_PATHS:
            paths.add(target.decode("ascii", "replace"))
        if target == b"/oauth/token" or target.startswith(b"/oauth/token?"):
            return self._token(request)
        return await self._api(request)

    # ----------------------------------------------------------------- /oauth/token

    def _token(self, request: Request) -> Response:
        self._token_requests += 1
        settings = self.settings
        if request.method != b"POST":
            return json_response(
                405,
                {"error": "invalid_request", "error_description": "use POST"},
                [(b"allow", b"POST")],
            )
        try:
            form = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            form = {}
        client_id = client_secret = None
        auth = request.header(b"authorization")
        if auth is not None and auth[:6].lower() == b"basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            name, sep, secret = decoded.partition(":")
            if sep:
                client_id, client_secret = unquote_plus(name), unquote_plus(secret)
        else:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if (
            client_id is None
            or client_secret is None
            or not hmac.compare_digest(client_id.encode(), settings.client_id.encode())
            or not hmac.compare_digest(client_secret.encode(), settings.client_secret.encode())
        ):
            return json_response(
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
                [(b"www-authenticate", b'Basic realm="cxone-sandbox"')],
            )
        grant_type = form.get("grant_type")
        if not grant_type:
            return json_response(
                400, {"error": "invalid_request", "error_description": "grant_type is required"}
            )
        if grant_type != "client_credentials":
            return json_response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"grant type {grant_type!r} is not supported",
                },
            )
        required = settings.required_scope.split()
        scope = form.get("scope", "").strip()
        if not scope:
            scope = " ".join(required)
        else:
            granted = scope.split()
            missing = [s for s in required if s not in granted]
            if missing:
                return json_response(
                    400,
                    {
                        "error": "invalid_scope",
                        "error_description": "scope must include " + " ".join(missing),
                    },
                )
        now = self.now()
        tokens = self._tokens
        if len(tokens) >= _MAX_TOKENS:
            for key in [k for k, expires in tokens.items() if expires <= now]:
                del tokens[key]
        token = secrets.token_urlsafe(32)
        tokens[token] = now + settings.token_lifetime
        self._tokens_issued += 1
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(settings.token_lifetime),
                "scope": scope,
            },
            [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")],
        )

    # ----------------------------------------------------------------- /api/...

    async def _api(self, request: Request) -> Response | Any:
        now = self.now()
        self._requests += 1
        if self._first_request_at is None:
            self._first_request_at = now
        self._last_request_at = now
        self._inflight += 1
        if self._inflight > self._max_concurrency:
            self._max_concurrency = self._inflight
        try:
            result = self._api_decide(request, now)
            latency = self.settings.latency
            if latency > 0:
                await trio.sleep(latency)
        finally:
            self._inflight -= 1
        if result is DROP:
            self._dropped += 1
        else:
            status = result.status
            self._by_status[status] = self._by_status.get(status, 0) + 1
        return result

    def _api_decide(self, request: Request, now: float) -> Response | Any:
        settings = self.settings
        if settings.outage:
            return json_response(
                503, {"error": "service_unavailable", "message": "the service is unavailable"}
            )
        headers: list[tuple[bytes, bytes]] = []
        rate = settings.rate_limit
        if rate is not None:
            bucket = self._get_bucket(float(rate), now)
            wait = bucket.take(now)
            if settings.rate_limit_headers:
                headers = bucket.headers()
            if wait > 0:
                self._rate_limited += 1
                return self._too_many(wait, headers)
        if settings.error_rate > 0:
            rng = self._rng()
            if rng.random() < settings.error_rate:
                status = rng.choice((500, 502, 503, 504))
                return json_response(
                    status, {"error": "server_error", "message": "simulated failure"}, headers
                )
        auth = request.header(b"authorization")
        expires = None
        if auth is not None and auth[:7].lower() == b"bearer ":
            token = auth[7:].strip().decode("latin-1")
            expires = self._tokens.get(token)
            if expires is not None and now >= expires:
                del self._tokens[token]
                expires = None
        if expires is None:
            headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
            return json_response(
                401,
                {"error": "invalid_token", "message": "missing, unknown or expired token"},
                headers,
            )
        target = request.target
        segment = target[len(_CONTACTS_PREFIX) :]
        if (
            not target.startswith(_CONTACTS_PREFIX)
            or not segment
            or b"/" in segment
            or b"?" in segment
            or b"#" in segment
        ):
            return json_response(
                404, {"error": "not_found", "message": "no such resource"}, headers
            )
        method = request.method
        if method != b"PATCH" and method != b"GET":
            headers.append((b"allow", b"GET, PATCH"))
            return json_response(
                405, {"error": "method_not_allowed", "message": "use GET or PATCH"}, headers
            )
        try:
            cid = unquote(segment.decode("ascii"), errors="strict")
        except UnicodeError:
            cid = None
        if cid is None or not self._exists(cid):
            shown = cid if cid is not None else segment.decode("ascii", "replace")
            return json_response(
                404, {"error": "not_found", "message": f"contact {shown} not found"}, headers
            )
        if method == b"GET":
            return json_response(200, {"contactId": cid, **self._contacts.get(cid, {})}, headers)
        return self._patch(cid, request.body, headers)

    def _patch(self, cid: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> Response | Any:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return json_response(
                400, {"error": "invalid_json", "message": "request body is not valid JSON"}, headers
            )
        if not isinstance(data, dict):
            return json_response(
                400,
                {
                    "error": "validation_failed",
                    "message": "request body must be a JSON object",
                    "fields": {},
                },
                headers,
            )
        errors: dict[str, str] = {}
        for name, value in data.items():
            if name not in CONTACT_FIELDS:
                errors[name] = "unknown field"
            elif value is not None and not isinstance(value, str):
                errors[name] = "must be a string or null"
            elif name == "email" and value is not None and not _EMAIL_RE.fullmatch(value):
                errors[name] = "invalid email address"
        if errors:
            return json_response(
                400,
                {"error": "validation_failed", "message": "invalid fields", "fields": errors},
                headers,
            )
        stored = self._contacts.get(cid)
        if stored is None:
            stored = self._contacts[cid] = {}
        for name, value in data.items():
            if value is None:
                stored.pop(name, None)
            else:
                stored[name] = value
        self._applied += 1
        self._updates[cid] = self._updates.get(cid, 0) + 1
        drop_rate = self.settings.drop_rate
        if drop_rate > 0 and self._rng().random() < drop_rate:
            return DROP
        return json_response(200, {"contactId": cid, **stored}, headers)

    def _too_many(self, wait: float, headers: list[tuple[bytes, bytes]]) -> Response:
        form = self.settings.retry_after
        wall = time.time()
        if form == "seconds":
            headers.append((b"retry-after", b"%d" % max(1, math.ceil(wait))))
        elif form == "http-date":
            # The Date header is truncated to the second; count from there so that
            # Retry-After minus Date is never shorter than the real wait.
            second = int(wall)
            wall = float(second)
            at = second + max(1, math.ceil((time.time() - second) + wait))
            headers.append((b"retry-after", http_date(at)))
        return json_response(
            429,
            {"error": "rate_limited", "message": "rate limit exceeded, retry later"},
            headers,
            date=wall,
        )

    # ----------------------------------------------------------------- /sandbox/...

    def _control(self, request: Request) -> Response:
        path = request.target.split(b"?", 1)[0]
        method = request.method
        if path == b"/sandbox/stats":
            if method != b"GET":
                return json_response(405, {"error": "method_not_allowed"}, [(b"allow", b"GET")])
            return json_response(200, self._stats_now())
        if path == b"/sandbox/reset":
            if method != b"POST":
                return json_response(405, {"error": "method_not_allowed"}, [(b"allow", b"POST")])
            self._reset_stats()
            return json_response(200, {"status": "ok"})
        if path == b"/sandbox/settings":
            if method == b"GET":
                return json_response(200, self._settings_json())
            if method != b"POST":
                return json_response(
                    405, {"error": "method_not_allowed"}, [(b"allow", b"GET, POST")]
                )
            try:
                changes = json.loads(request.body)
            except (ValueError, UnicodeDecodeError):
                return json_response(
                    400, {"error": "invalid_json", "message": "request body is not valid JSON"}
                )
            if not isinstance(changes, dict):
                return json_response(
                    400,
                    {"error": "validation_failed", "message": "body must be a JSON object"},
                )
            errors = _validate_settings(changes)
            for name in ("host", "port"):
                if name in changes:
                    errors[name] = "cannot be changed while running"
            if errors:
                return json_response(
                    400,
                    {"error": "validation_failed", "message": "invalid settings", "fields": errors},
                )
            for name, value in changes.items():
                if name == "extra_ids":
                    value = tuple(value)
                setattr(self.settings, name, value)
            return json_response(200, self._settings_json())
        return json_response(404, {"error": "not_found", "message": "no such resource"})

    def _settings_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self.settings)
        values["extra_ids"] = list(values["extra_ids"])
        return values

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        await serve_connection(stream, self._handle)


@asynccontextmanager
async def open_sandbox(settings: SandboxSettings | None = None) -> AsyncIterator[Sandbox]:
    """Run a sandbox server in the current Trio run while the context is open.

    Args:
        settings: Knobs; defaults when None. ``port=0`` picks a free port.

    Yields:
        The running sandbox; ``sandbox.url`` is its base URL.
    """
    sandbox = Sandbox(settings)
    config = sandbox.settings
    if config.seed_count > _seed_count:
        await trio.to_thread.run_sync(_ensure_seeded, config.seed_count)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, sandbox._serve_stream, config.port, host=config.host)
        )
        port = listeners[0].socket.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        sandbox.url = f"http://{host}:{port}"
        sandbox._trio_token = trio.lowlevel.current_trio_token()
        sandbox._loop_thread = threading.get_ident()
        try:
            yield sandbox
        finally:
            sandbox._trio_token = None
            sandbox._loop_thread = None
            nursery.cancel_scope.cancel()


@contextmanager
def run_sandbox_in_thread(settings: SandboxSettings | None = None) -> Iterator[Sandbox]:
    """Run a sandbox server from a background thread with its own Trio loop.

    Meant for synchronous code, e.g. a test that runs the ``etl`` command in a subprocess.
    ``stats()``, ``contact()`` and ``reset_stats()`` are safe to call from any thread.

    Args:
        settings: Knobs; defaults when None.

    Yields:
        The running sandbox.

    Raises:
        OSError: The server could not listen (e.g. the port is taken).
    """
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        with trio.CancelScope() as scope:
            state["scope"] = scope
            state["token"] = trio.lowlevel.current_trio_token()
            async with open_sandbox(settings) as sandbox:
                state["sandbox"] = sandbox
                started.set()
                await trio.sleep_forever()

    def runner() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the caller below
            state["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=runner, name="cxone-sandbox", daemon=True)
    thread.start()
    started.wait()
    if "sandbox" not in state:
        thread.join()
        error = state.get("error")
        if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        raise error if error is not None else RuntimeError("the sandbox did not start")
    try:
        yield state["sandbox"]
    finally:
        try:
            state["token"].run_sync_soon(state["scope"].cancel)
        except trio.RunFinishedError:
            pass
        thread.join()
    error = state.get("error")
    if error is not None:
        raise RuntimeError("the sandbox server stopped with an error") from error


# --------------------------------------------------------------------- command line


def _number_type(low: float, high: float | None = None, *, low_inclusive: bool = True):
    """An argparse type: a float in a range (so bad values are usage errors, not crashes)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        too_low = value < low if low_inclusive else value <= low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            bound = f">= {low:g}" if low_inclusive else f"> {low:g}"
            if high is not None:
                bound = f"between {low:g} and {high:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}: {text!r}")
        return value

    return parse


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox options to a command-line parser.

    Args:
        parser: The parser (e.g. of ``etl sandbox cxone``).
    """
    defaults = SandboxSettings()
    add = parser.add_argument
    add("--host", default=defaults.host, help="address to listen on (default: %(default)s)")
    add("--port", type=_count, default=8080, help="port to listen on, 0 for any (default: 8080)")
    add("--client-id", default=defaults.client_id, help="OAuth client id (default: %(default)s)")
    add(
        "--client-secret",
        default=defaults.client_secret,
        help="OAuth client secret (default: %(default)s)",
    )
    add(
        "--required-scope",
        default=defaults.required_scope,
        help="scope a token request must include (default: %(default)s)",
    )
    add(
        "--token-lifetime",
        type=_number_type(0),
        default=defaults.token_lifetime,
        metavar="SECONDS",
        help="lifetime of issued tokens (default: %(default)s)",
    )
    add(
        "--rate-limit",
        type=_number_type(0, low_inclusive=False),
        default=None,
        metavar="PER_SECOND",
        help="API requests per second before 429 (default: unlimited)",
    )
    add("--burst", type=_number_type(1), default=None, help="rate-limit bucket size (default: rate/10)")
    add(
        "--retry-after",
        choices=_RETRY_AFTER_FORMS,
        default=defaults.retry_after,
        help="form of Retry-After on 429 (default: %(default)s)",
    )
    add(
        "--rate-limit-headers",
        action="store_true",
        help="send X-RateLimit-Limit/-Remaining/-Reset headers",
    )
    add(
        "--latency",
        type=_number_type(0),
        default=0.0,
        metavar="SECONDS",
        help="delay added before each API response",
    )
    add(
        "--error-rate",
        type=_number_type(0, 1),
        default=0.0,
        metavar="SHARE",
        help="share of API requests answered with a random 5xx (0..1)",
    )
    add(
        "--drop-rate",
        type=_number_type(0, 1),
        default=0.0,
        metavar="SHARE",
        help="share of PATCHes applied and then dropped without a response (0..1)",
    )
    add(
        "--seed-count",
        type=_count,
        default=defaults.seed_count,
        help="number of seeded contacts (default: %(default)s)",
    )
    add("--random-seed", type=int, default=None, help="seed for the random failures")


def settings_from_args(ns: argparse.Namespace) -> SandboxSettings:
    """Build settings from options added by :func:`add_arguments`.

    Args:
        ns: Parsed arguments.

    Returns:
        The settings.

    Raises:
        ValueError: A value is out of range.
    """
    defaults = SandboxSettings()
    return SandboxSettings(
        host=ns.host,
        port=ns.port,
        client_id=ns.client_id,
        client_secret=ns.client_secret,
        required_scope=getattr(ns, "required_scope", defaults.required_scope),
        token_lifetime=ns.token_lifetime,
        rate_limit=ns.rate_limit,
        burst=ns.burst,
        retry_after=ns.retry_after,
        rate_limit_headers=ns.rate_limit_headers,
        latency=ns.latency,
        error_rate=ns.error_rate,
        drop_rate=ns.drop_rate,
        seed_count=ns.seed_count,
        random_seed=ns.random_seed,
    )


def serve_forever(settings: SandboxSettings) -> None:
    """Serve until Ctrl-C (or SIGTERM), printing the URL and credentials first.

    Args:
        settings: Knobs.
    """

    async def main() -> None:
        signals = [signal.SIGINT]
        if hasattr(signal, "SIGTERM"):
            signals.append(signal.SIGTERM)
        with trio.open_signal_receiver(*signals) as received:
            async with open_sandbox(settings) as sandbox:
                s = sandbox.settings
                print(
                    f"CXone sandbox listening on {sandbox.url} "
                    f"client_id={s.client_id} client_secret={s.client_secret} "
                    f"scope={s.required_scope} (Ctrl-C to stop)",
                    flush=True,
                )
                async for _ in received:
                    break

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m etl_cxone.sandbox``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m etl_cxone.sandbox", description="Run the local CXone sandbox API."
    )
    add_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        settings = settings_from_args(ns)
    except ValueError as exc:
        parser.error(str(exc))
    serve_forever(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
