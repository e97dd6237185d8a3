"""The sandbox's request handling: its state and the answer to each request.

Nothing here knows about sockets: the server (:mod:`._server`) and the in-process
transport (:mod:`._transport`) both hand each request to :meth:`Handlers._handle`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import trio

from ._access_keys import ACCESS_KEY_PATH, REFRESH_PATH, TOKEN_PATH, AccessKeyGrants
from ._address_books import ADMIN_PREFIX, Directory
from ._contacts import is_seeded, patch_errors
from ._discovery import DISCOVERY_PREFIX, discovery_document
from ._http import DROP, Headers, Request, Response, json_response
from ._oauth import TokenStore, issue_token
from ._quota import Quota, RateSchedule, throttled
from ._settings import SandboxSettings, apply_changes
from ._stats import MAX_PATHS, Stats

__all__ = ["Handlers"]

_CONTACTS_PREFIX = b"/api/v2/contacts/"
_ACCESS_KEY_PATHS = (TOKEN_PATH, ACCESS_KEY_PATH, REFRESH_PATH)
# Accept values that allow a JSON answer.
_JSON_MEDIA = frozenset({b"application/json", b"application/*", b"*/*"})


def _not_allowed(allow: bytes) -> Response:
    return json_response(405, {"error": "method_not_allowed"}, [(b"allow", allow)])


def _invalid_json(headers: Headers | None = None) -> Response:
    return json_response(400, {"error": "invalid_json", "message": "request body is not valid JSON"}, headers)


def _accepts_json(accept: bytes | None) -> bool:
    """Whether an ``Accept`` header allows ``application/json`` (a weight ``q=0`` refuses a type)."""
    if accept is None:
        return False
    for item in accept.split(b","):
        media, *params = item.split(b";")
        if media.strip().lower() not in _JSON_MEDIA:
            continue
        weights = [p.strip()[2:] for p in params if p.strip().lower().startswith(b"q=")]
        try:
            if not weights or float(weights[0]) > 0:
                return True
        except ValueError:
            continue
    return False


class Handlers:
    """The state of a sandbox (settings, contacts, tokens, quota, statistics) and its routes.

    Args:
        settings: Knobs; defaults when None.
        clock: Monotonic clock in seconds; :meth:`advance_clock` adds to it.
    """

    def __init__(self, settings: SandboxSettings | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings if settings is not None else SandboxSettings()
        self._clock = clock
        self._clock_offset = 0.0
        self._tokens = TokenStore()
        self._access_keys = AccessKeyGrants(self._tokens)
        self._contacts: dict[str, dict[str, str]] = {}
        self._quota = Quota()
        self._schedule = RateSchedule()
        self._random_seed = self.settings.random_seed
        self._random = random.Random(self._random_seed)
        self._extra_key: tuple[str, ...] | None = None
        self._extra_set: frozenset[str] = frozenset()
        self._inflight = 0
        self._stats = Stats()
        self._directory = Directory()

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward, as if time had passed.

        The clock drives token expiry, the rate limit, its schedule and the stats timestamps,
        so tests can expire a token or refill the quota without sleeping.

        Args:
            seconds: How far to move the clock (non-negative).

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("the sandbox clock cannot go backwards")
        self._clock_offset += seconds

    def now(self) -> float:
        """Return the sandbox clock: the monotonic clock plus any :meth:`advance_clock`."""
        return self._clock() + self._clock_offset

    # ----------------------------------------------------------------- state

    def _reset_stats(self) -> None:
        self._stats = Stats(max_concurrency=self._inflight)
        self._schedule.restart()

    def _contact_now(self, cid: str) -> dict[str, Any] | None:
        if not self._exists(cid):
            return None
        return {"contactId": cid, **self._contacts.get(cid, {})}

    def _exists(self, cid: str) -> bool:
        settings = self.settings
        if is_seeded(cid, settings.seed_count):
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

    # ----------------------------------------------------------------- routing

    async def _handle(self, request: Request) -> Response | Any:
        target = request.target
        if target.startswith(b"/sandbox/"):
            return self._control(request)
        paths = self._stats.paths
        if len(paths) < MAX_PATHS:
            paths.add(target.decode("ascii", "replace"))
        if target == b"/oauth/token" or target.startswith(b"/oauth/token?"):
            return self._token(request)
        path = target.split(b"?", 1)[0]
        if path in _ACCESS_KEY_PATHS:
            return self._access_key_token(request)
        if target.startswith(DISCOVERY_PREFIX):
            return discovery_document(request, self.settings)
        return await self._api(request)

    def _token(self, request: Request) -> Response:
        stats = self._stats
        stats.token_requests += 1
        response = issue_token(request, self.settings, self._tokens, self.now())
        if response.status == 200:
            stats.tokens_issued += 1
            stats.grants["client_credentials"] = stats.grants.get("client_credentials", 0) + 1
        return response

    def _access_key_token(self, request: Request) -> Response:
        stats = self._stats
        stats.token_requests += 1
        response, grant = self._access_keys.answer(request, self.settings, self.now())
        if grant is not None:
            stats.tokens_issued += 1
            stats.grants[grant] = stats.grants.get(grant, 0) + 1
        return response

    # ----------------------------------------------------------------- /api/...

    async def _api(self, request: Request) -> Response | Any:
        now = self.now()
        stats = self._stats
        stats.requests += 1
        first = stats.first_request_at
        if first is None:
            first = stats.first_request_at = now
        stats.last_request_at = now
        settings = self.settings
        if settings.rate_schedule:
            self._schedule.apply(settings, first, now)
        cap = settings.max_in_flight
        if cap is not None and self._inflight >= cap:
            # Refused on arrival and answered at once: it never holds a place in flight.
            result = self._throttled(settings.latency, [])
        else:
            self._inflight += 1
            if self._inflight > stats.max_concurrency:
                stats.max_concurrency = self._inflight
            try:
                result = self._api_decide(request, now)
                latency = settings.latency
                if settings.latency_jitter > 0:
                    latency += self._rng().random() * settings.latency_jitter
                if latency > 0:
                    await trio.sleep(latency)
            finally:
                self._inflight -= 1
            stats = self._stats  # reset_stats() may have run during the latency
        if result is DROP:
            stats.dropped += 1
        else:
            status = result.status
            stats.by_status[status] = stats.by_status.get(status, 0) + 1
        return result

    def _api_decide(self, request: Request, now: float) -> Response | Any:
        settings = self.settings
        if settings.outage:
            asked = settings.outage_retry_after
            retry_after: Headers = [] if asked is None else [(b"retry-after", str(asked).encode())]
            return json_response(503, {"error": "service_unavailable", "message": "the service is unavailable"}, retry_after)
        headers: Headers = []
        rate = settings.rate_limit
        if rate is not None:
            quota = self._quota
            wait = quota.take(settings, rate, now)
            if settings.rate_limit_headers:
                headers = quota.headers(now)
            if wait > 0:
                return self._throttled(wait, headers)
        if settings.error_rate > 0:
            rng = self._rng()
            if rng.random() < settings.error_rate:
                status = rng.choice((500, 502, 503, 504))
                return json_response(status, {"error": "server_error", "message": "simulated failure"}, headers)
        if not self._tokens.is_valid(request.header(b"authorization"), now, settings.token_max_uses):
            headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
            return json_response(
                401, {"error": "invalid_token", "message": "missing, unknown or expired token"}, headers
            )
        target = request.target
        if target.startswith(ADMIN_PREFIX):
            # CXone's admin API; the tutorial's contacts API does not check Accept.
            if settings.require_accept and not _accepts_json(request.header(b"accept")):
                return json_response(406, {"error": "not_acceptable", "message": "No known way to render data"}, headers)
            return self._admin(request, headers)
        segment = target[len(_CONTACTS_PREFIX) :]
        if (
            not target.startswith(_CONTACTS_PREFIX)
            or not segment
            or b"/" in segment
            or b"?" in segment
            or b"#" in segment
        ):
            return json_response(404, {"error": "not_found", "message": "no such resource"}, headers)
        method = request.method
        if method != b"PATCH" and method != b"GET":
            headers.append((b"allow", b"GET, PATCH"))
            return json_response(405, {"error": "method_not_allowed", "message": "use GET or PATCH"}, headers)
        try:
            cid = unquote(segment.decode("ascii"), errors="strict")
        except UnicodeError:
            cid = None
        if cid is None or not self._exists(cid):
            shown = cid if cid is not None else segment.decode("ascii", "replace")
            return json_response(404, {"error": "not_found", "message": f"contact {shown} not found"}, headers)
        if method == b"GET":
            return json_response(200, {"contactId": cid, **self._contacts.get(cid, {})}, headers)
        if cid in self.settings.failing_ids:
            return json_response(500, {"error": "server_error", "message": f"contact {cid} cannot be updated"}, headers)
        return self._patch(cid, request.body, headers)

    def _admin(self, request: Request, headers: Headers) -> Response:
        """Address-book entries and do-not-call records (see :mod:`._address_books`)."""
        status, payload = self._directory.answer(
            request.method, request.target, request.body, max_entries=self.settings.max_bulk_entries
        )
        return json_response(status, payload, headers)

    def _throttled(self, wait: float, headers: Headers) -> Response:
        self._stats.rate_limited += 1
        settings = self.settings
        return throttled(settings.retry_after, settings.throttle_status, wait, headers)

    def _patch(self, cid: str, body: bytes, headers: Headers) -> Response | Any:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _invalid_json(headers)
        if not isinstance(data, dict):
            return json_response(
                400,
                {"error": "validation_failed", "message": "request body must be a JSON object", "fields": {}},
                headers,
            )
        errors = patch_errors(data)
        if errors:
            return json_response(
                400, {"error": "validation_failed", "message": "invalid fields", "fields": errors}, headers
            )
        stored = self._contacts.get(cid)
        if stored is None:
            stored = self._contacts[cid] = {}
        for name, value in data.items():
            if value is None:
                stored.pop(name, None)
            else:
                stored[name] = value
        stats = self._stats
        stats.applied += 1
        stats.updates[cid] = stats.updates.get(cid, 0) + 1
        drop_rate = self.settings.drop_rate
        if drop_rate > 0 and self._rng().random() < drop_rate:
            return DROP
        return json_response(200, {"contactId": cid, **stored}, headers)

    # ----------------------------------------------------------------- /sandbox/...

    def _control(self, request: Request) -> Response:
        path = request.target.split(b"?", 1)[0]
        method = request.method
        if path == b"/sandbox/stats":
            if method != b"GET":
                return _not_allowed(b"GET")
            return json_response(200, self._stats.as_dict())
        if path == b"/sandbox/reset":
            if method != b"POST":
                return _not_allowed(b"POST")
            self._reset_stats()
            return json_response(200, {"status": "ok"})
        if path == b"/sandbox/settings":
            if method == b"GET":
                return json_response(200, self.settings.model_dump(mode="json"))
            if method != b"POST":
                return _not_allowed(b"GET, POST")
            return self._change_settings(request.body)
        return json_response(404, {"error": "not_found", "message": "no such resource"})

    def _change_settings(self, body: bytes) -> Response:
        try:
            changes = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _invalid_json()
        if not isinstance(changes, dict):
            return json_response(400, {"error": "validation_failed", "message": "body must be a JSON object"})
        errors = apply_changes(self.settings, changes)
        if errors:
            return json_response(
                400, {"error": "validation_failed", "message": "invalid settings", "fields": errors}
            )
        return json_response(200, self.settings.model_dump(mode="json"))
