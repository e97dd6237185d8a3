"""What an answer of the API means for the records it carried, by the status policy."""

from __future__ import annotations

import math
from typing import Any

from etl_core import (
    FatalError,
    PermanentError,
    Record,
    RecordError,
    SendResult,
    ThrottledError,
    TransientError,
    parse_retry_after,
)
from etl_core.http import Answer

from ._results import ItemResult
from ._status import Action

_DETAIL_LIMIT = 500


def refusal(answer: Answer, action: Action) -> PermanentError:
    """The error of an answer whose action is not ``ok``.

    Args:
        answer: The API's answer.
        action: What the status policy says it means.

    Returns:
        The error of records refused for good (``reject``, ``missing``).

    Raises:
        ThrottledError: ``throttle``, with the parsed Retry-After.
        TransientError: ``retry``.
        FatalError: ``stop``.
    """
    status = answer.status
    detail = answer_detail(answer)
    headers = answer.headers
    if action == "throttle":
        # Clamped by the runner (run.retry.retry_after_max), the same for every sink.
        retry_after = parse_retry_after(headers.get("Retry-After"), date=headers.get("Date"), maximum=math.inf)
        raise ThrottledError(reason(answer), retry_after=retry_after, status=status, detail=detail, sent_at=answer.sent_at)
    if action == "retry":
        raise TransientError(reason(answer), status=status, detail=detail)
    if action == "stop":
        raise FatalError(f"the API answered {reason(answer)}, which stops the run (status policy: stop)")
    return PermanentError(reason(answer), status=status, detail=detail)


def answer_detail(answer: Answer) -> str | None:
    """The answer's body for the rejects file (its first 500 characters), or why it could not be read."""
    if answer.unreadable:
        return f"(the body could not be read: {answer.unreadable})"
    text = answer.text.strip()
    return text[:_DETAIL_LIMIT] or None


def reason(answer: Answer) -> str:
    """``HTTP 400: <the answer's message, or its reason phrase>``."""
    status = answer.status
    if 300 <= status < 400:
        return f"HTTP {status}: redirected, which is not followed; check base_url"
    payload = answer.json()
    message = None
    if isinstance(payload, dict):
        message = next((payload[key] for key in ("message", "error_description", "error") if isinstance(payload.get(key), str)), None)
    return f"HTTP {status}: {_one_line(message or answer.reason_phrase.lower())}"


def item_outcomes(
    answer: Answer, results: list[ItemResult | str], delivered: SendResult
) -> list[SendResult | RecordError]:
    """Each item's outcome from its result in a batch answer (a string: why it has none)."""
    status = answer.status
    outcomes: list[SendResult | RecordError] = []
    for result in results:
        if isinstance(result, str):
            outcomes.append(PermanentError(f"HTTP {status}: {result}", status=status, detail=answer_detail(answer)))
        elif result.ok:
            outcomes.append(delivered)
        else:
            outcomes.append(item_error(status, result))
    return outcomes


def item_error(status: int, result: ItemResult) -> PermanentError:
    """The error of one item a batch answer says was not applied."""
    return PermanentError(f"HTTP {status}: {_one_line(result.error)}", status=status, detail=result.detail)


def match_key(field: str | None, record: Record, item: Any) -> Any:
    """What a result must hold in ``field`` to be this record's: the item's value, else the record's."""
    if field is None:
        return None
    if isinstance(item, dict) and field in item:
        return item[field]
    return record.data.get(field)


def _one_line(text: str) -> str:
    """The API's words, fit for a reason: one line (no line break can forge a log line), 200 characters."""
    return " ".join(text.split())[:200] or "refused"
