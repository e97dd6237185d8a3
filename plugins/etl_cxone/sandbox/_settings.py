"""The sandbox's settings: one model for Python, the command line, ``/sandbox/settings`` and the docs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, Field
from pydantic_core import ErrorDetails, PydanticUndefined

__all__ = ["FIXED_WHILE_RUNNING", "Flag", "SandboxSettings", "apply_changes", "error_message"]

#: Settings only read when the server starts.
FIXED_WHILE_RUNNING = ("host", "port")


@dataclass(frozen=True)
class Flag:
    """How a setting appears on the command line (metadata of the setting's annotation).

    Every setting gets an option named after it (``seed_count``: ``--seed-count``) unless its
    ``Flag`` says ``omit``.

    Attributes:
        metavar: Placeholder of the value in ``--help``.
        default: Default of the option, when it differs from the setting's.
        parse: Turns the option's text into a value to validate (default: the text itself).
        omit: No option for this setting.
    """

    metavar: str | None = None
    default: Any = PydanticUndefined
    parse: Callable[[str], Any] | None = None
    omit: bool = False


def _parse_schedule(text: str) -> list[tuple[str, str]]:
    """``20:50,40:100`` -> ``[("20", "50"), ("40", "100")]`` (validated as numbers afterwards)."""
    pairs = []
    for part in text.split(","):
        seconds, colon, rate = part.partition(":")
        if not colon:
            raise ValueError("expected SECONDS:RATE pairs separated by commas")
        pairs.append((seconds.strip(), rate.strip()))
    return pairs


def _times_increase(schedule: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    times = [seconds for seconds, _ in schedule]
    if any(later <= earlier for earlier, later in zip(times, times[1:], strict=False)):
        raise ValueError("the times must increase")
    return schedule


_NO_FLAG = Flag(omit=True)
_SECONDS = Flag(metavar="SECONDS")
_SHARE = Flag(metavar="SHARE")


class SandboxSettings(pydantic.BaseModel):
    """Knobs of the sandbox. Fields may be changed while the sandbox runs (except host and port).

    Assignments are validated: ``sandbox.settings.rate_limit = 0`` raises ``ValueError``.
    """

    model_config = pydantic.ConfigDict(validate_assignment=True, extra="forbid", allow_inf_nan=False)

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: Annotated[int, Flag(default=8080)] = Field(
        default=0, ge=0, le=65535, description="Port to listen on; 0 picks a free port."
    )
    client_id: str = Field(default="sandbox-client", description="The only accepted OAuth client id.")
    client_secret: str = Field(default="sandbox-secret", description="The only accepted OAuth client secret.")
    required_scope: str = Field(
        default="contact:write", description="Scope(s), space separated, a token request must include."
    )
    token_lifetime: Annotated[float, _SECONDS] = Field(
        default=3600.0, ge=0, description="Lifetime of issued tokens in seconds (``expires_in``)."
    )
    access_key_id: str = Field(
        default="sandbox-access-key",
        description="The only accepted access key id: the ``username`` of the password grant, ``accessKeyId`` of the legacy endpoint.",
    )
    access_key_secret: str = Field(
        default="sandbox+access/key=secret==",
        description="The only accepted access key secret (``password``, ``accessKeySecret``); like real ones, it holds ``+/=``.",
    )
    refresh_tokens: bool = Field(
        default=True,
        description="Give a one-use ``refresh_token`` with each token of ``/auth/token`` and the access-key endpoints.",
    )
    token_max_uses: Annotated[int | None, Flag(metavar="REQUESTS")] = Field(
        default=None,
        ge=1,
        description="Each token is accepted for this many API requests, then refused with 401 as if revoked; no limit when unset.",
    )
    tenant_id: str = Field(
        default="11111111-2222-4333-8444-555555555555",
        description="The ``tenantId`` claim of access-key tokens, and the only tenant ``/.well-known/cxone-configuration`` knows.",
    )
    area: str = Field(default="na1", description="The ``area`` claim of access-key tokens and of the cxone-configuration document.")
    bu_id: int = Field(default=4600001, description="The ``icBUId`` (business unit) claim of access-key tokens.")
    require_accept: bool = Field(
        default=True,
        description=(
            "Answer 406 \"No known way to render data\" to address-book and do-not-call requests whose "
            "``Accept`` header does not allow ``application/json`` (a missing header allows nothing), as "
            "CXone does. The contacts API does not check it."
        ),
    )
    rate_limit: Annotated[float | None, Flag(metavar="PER_SECOND")] = Field(
        default=None, gt=0, description="API requests per second the quota admits; unlimited when unset."
    )
    limit_shape: Literal["token_bucket", "fixed_window", "sliding_window"] = Field(
        default="token_bucket",
        description=(
            "Shape of the quota: a token bucket of ``burst`` requests refilled at ``rate_limit`` per "
            "second; fixed windows of ``window`` seconds, each admitting ``rate_limit * window`` "
            "requests; or a sliding window admitting at most ``rate_limit * window`` requests in "
            "any trailing ``window`` seconds."
        ),
    )
    burst: float | None = Field(
        default=None, ge=1, description="Token bucket size; ``max(1, rate_limit / 10)`` when unset."
    )
    window: Annotated[float, _SECONDS] = Field(
        default=1.0,
        gt=0,
        description="Length of a fixed or sliding window in seconds (it admits at least 1 request).",
    )
    rate_schedule: Annotated[
        tuple[tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(gt=0)]], ...],
        AfterValidator(_times_increase),
        Flag(metavar="SECONDS:RATE,...", parse=_parse_schedule),
    ] = Field(
        default=(),
        description=(
            "A quota that moves: ``[seconds, rate]`` pairs, e.g. ``[[20, 50], [40, 100]]`` (on the "
            "command line ``20:50,40:100``); each sets ``rate_limit`` once, that many seconds after "
            "the first API request. A new schedule, or a reset of the statistics, starts it over."
        ),
    )
    throttle_penalty: Annotated[float, _SECONDS] = Field(
        default=0.0,
        ge=0,
        description=(
            "Seconds a refused request holds the quota shut: nothing is admitted before it was "
            "refused plus this, so hammering extends the refusal."
        ),
    )
    max_in_flight: Annotated[int | None, Flag(metavar="REQUESTS")] = Field(
        default=None,
        ge=1,
        description=(
            "Most API requests handled at once; one more is refused at once, with ``latency`` as "
            "its wait. Unlimited when unset."
        ),
    )
    retry_after: Literal["seconds", "http-date", "none", "milliseconds", "fractional"] = Field(
        default="seconds",
        description=(
            "How a refusal says when to retry: ``Retry-After`` in whole seconds (at least 1), as an "
            "HTTP date, not at all, ``retry-after-ms`` in milliseconds (and no ``Retry-After``), or "
            "``Retry-After`` in seconds with 3 decimals. Every form rounds the wait up."
        ),
    )
    throttle_status: Literal[429, 503] = Field(
        default=429, description="Status of a refusal (quota or ``max_in_flight``): 429, or 503 for an overloaded service."
    )
    rate_limit_headers: bool = Field(
        default=False,
        description=(
            "Send ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` on API "
            "responses (when a rate limit is set)."
        ),
    )
    latency: Annotated[float, _SECONDS] = Field(default=0.0, ge=0, description="Seconds added before each API response.")
    latency_jitter: Annotated[float, _SECONDS] = Field(
        default=0.0, ge=0, description="Up to this many more seconds of latency, uniformly random per API response."
    )
    error_rate: Annotated[float, _SHARE] = Field(
        default=0.0, ge=0, le=1, description="Share of API requests answered with a random 500/502/503/504 (not applied)."
    )
    drop_rate: Annotated[float, _SHARE] = Field(
        default=0.0, ge=0, le=1, description="Share of PATCHes applied and then answered by closing the connection."
    )
    outage: Annotated[bool, _NO_FLAG] = Field(
        default=False, description="Answer 503 to every API request while true (see ``outage_retry_after``)."
    )
    outage_retry_after: Annotated[int | None, _NO_FLAG] = Field(
        default=None, ge=0, description="``Retry-After`` seconds sent with the outage's 503s; none when unset."
    )
    seed_count: int = Field(
        default=100_000, ge=0, description="Contacts ``contact_id(0)`` .. ``contact_id(seed_count - 1)`` exist."
    )
    extra_ids: Annotated[tuple[str, ...], _NO_FLAG] = Field(default=(), description="More contact ids that exist.")
    failing_ids: Annotated[tuple[str, ...], _NO_FLAG] = Field(
        default=(), description="Contact ids whose every PATCH is answered 500 (not applied)."
    )
    max_bulk_entries: int = Field(
        default=1000,
        ge=1,
        description="Most entries or records in one address-book or do-not-call request; more is refused whole with 413.",
    )
    random_seed: int | None = Field(
        default=None, description="Seed of the random choices (error_rate, drop_rate, latency_jitter); random when unset."
    )


def apply_changes(settings: SandboxSettings, changes: dict[str, Any]) -> dict[str, str]:
    """Change settings of a running sandbox: all of them, or none when one is invalid.

    Values are checked as JSON values, strictly (``"50"`` is not a number).

    Args:
        settings: The live settings.
        changes: ``{name: value}`` decoded from JSON.

    Returns:
        ``{name: problem}`` for each invalid change; empty when all were applied.
    """
    errors = {name: "cannot be changed while running" for name in FIXED_WHILE_RUNNING if name in changes}
    merged = settings.model_dump(mode="json") | changes
    try:
        valid = SandboxSettings.model_validate_json(json.dumps(merged), strict=True)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0])
            errors.setdefault(name, error_message(error))
    if errors:
        return errors
    for name in changes:
        setattr(settings, name, getattr(valid, name))
    return {}


def error_message(error: ErrorDetails) -> str:
    """The message of one validation error, without pydantic's ``Value error,`` prefix."""
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]
