"""What an answer of the CXone API that is not 2xx means for its record."""

from __future__ import annotations

import math

from etl_core import PermanentError, ThrottledError, TransientError, parse_retry_after
from etl_core.http import Answer

_THROTTLED = frozenset({429, 503})
_DETAIL_LIMIT = 500
_REASONS = {
    400: "validation failed",
    404: "contact not found",
    409: "conflict",
    422: "unprocessable entity",
}


def refusal(answer: Answer, *, secrets: tuple[str, ...], scope: str) -> PermanentError:
    """Classify an answer that is not 2xx.

    Args:
        answer: The API's answer.
        secrets: Values to mask in the error's detail (the token, the option secrets).
        scope: The scopes asked for, named by a 403's reason.

    Returns:
        The error of a record refused for good (3xx, 4xx, and 5xx other than 503 are not).

    Raises:
        ThrottledError: 429 or 503, with the parsed Retry-After.
        TransientError: Another 5xx.
    """
    status = answer.status
    headers = answer.headers
    detail = _detail(answer, secrets)
    if status in _THROTTLED:
        # Clamped by the runner (run.retry.retry_after_max), the same for every sink.
        retry_after = parse_retry_after(headers.get("Retry-After"), date=headers.get("Date"), maximum=math.inf)
        phrase = "too many requests" if status == 429 else "service unavailable"
        raise ThrottledError(
            f"HTTP {status}: {phrase}", retry_after=retry_after, status=status, detail=detail, sent_at=answer.sent_at
        )
    if status >= 500:
        raise TransientError(f"HTTP {status}: server error", status=status, detail=detail)
    if status == 403:
        reason = f"HTTP 403: forbidden; check that the token's scope grants {scope or 'access'}"
    elif status == 400:
        reason = f"HTTP 400: {_validation_reason(answer)}"
    elif status in _REASONS:
        reason = f"HTTP {status}: {_REASONS[status]}"
    elif 300 <= status < 400:
        reason = f"HTTP {status}: redirected, which is not followed; check base_url"
    else:
        reason = f"HTTP {status}: {answer.reason_phrase.lower() or 'refused'}"
    return PermanentError(reason, status=status, detail=detail)


def _detail(answer: Answer, secrets: tuple[str, ...]) -> str | None:
    if answer.unreadable:
        return f"(the body could not be read: {answer.unreadable})"
    text = answer.text.strip()
    if not text:
        return None
    # Defence in depth: never let an echoed token or secret reach the rejects file.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:_DETAIL_LIMIT]


def _validation_reason(answer: Answer) -> str:
    """``validation failed`` plus the names of the rejected fields, when the body lists them."""
    payload = answer.json()
    fields = payload.get("fields") if isinstance(payload, dict) else None
    if isinstance(fields, dict) and fields:
        names = sorted(str(name) for name in fields)
        return f"validation failed: {', '.join(names[:5])}" + (", ..." if len(names) > 5 else "")
    return _REASONS[400]
