"""Per-item results of a batch answer, mapped back to the records that were sent."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["ItemResult", "ResultMapper", "check_pointer", "resolve_pointer"]

_MISSING = object()
_DETAIL_LIMIT = 500


def check_pointer(pointer: str) -> str:
    """Check a JSON pointer (RFC 6901): empty, or ``/``-separated reference tokens.

    Raises:
        ValueError: It does not start with ``/``, or has a ``~`` not followed by 0 or 1.
    """
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} is not a JSON pointer (it must start with '/', e.g. /entryResults)")
    if any(part.replace("~0", "").replace("~1", "").count("~") for part in pointer.split("/")):
        raise ValueError(f"{pointer!r}: '~' must be followed by 0 or 1 (~0 is '~', ~1 is '/')")
    return pointer


def resolve_pointer(document: Any, pointer: str) -> Any:
    """Return the value ``pointer`` refers to in ``document``, or None when there is none."""
    value = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict):
            value = value.get(token, _MISSING)
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return None
        if value is _MISSING:
            return None
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class ItemResult:
    """What the answer says about one record.

    Attributes:
        ok: Whether it was applied.
        error: The answer's error text for it ("" when none was given).
        detail: The item's result as JSON text (for the rejects file).
    """

    ok: bool
    error: str
    detail: str | None


class ResultMapper:
    """Find each record's result in a batch answer.

    Args:
        pointer: JSON pointer to the array of results, e.g. ``/entryResults``.
        match: ``index`` (the n-th result is the n-th item sent) or the name of a field
            that each result and each record share, e.g. ``externalId``.
        success: Field (or JSON pointer inside a result) that is ``true`` for an applied
            item; None: an item without an ``error`` was applied.
        error: Field (or JSON pointer inside a result) holding the item's error text.
    """

    def __init__(self, *, pointer: str, match: str, success: str | None, error: str | None) -> None:
        self._pointer = check_pointer(pointer)
        self._match = match
        self._success = _as_pointer(success)
        self._error = _as_pointer(error)

    def results(self, answer: Any, keys: Sequence[Any]) -> list[ItemResult | str]:
        """Map an answer's results to the items sent.

        Args:
            answer: The decoded JSON answer.
            keys: For each item sent, in order, its value of the ``match`` field (ignored
                when matching by index).

        Returns:
            One entry per item: its :class:`ItemResult`, or why none was found.
        """
        results = resolve_pointer(answer, self._pointer)
        if not isinstance(results, list):
            return [f"the answer has no results array at {self._pointer or '(root)'}"] * len(keys)
        if self._match == "index":
            found: list[Any] = [results[i] if i < len(results) else None for i in range(len(keys))]
        else:
            by_key: dict[str, list[Any]] = {}
            for result in results:
                if isinstance(result, dict) and result.get(self._match) is not None:
                    by_key.setdefault(str(result[self._match]), []).append(result)
            # Each result answers one item: a key sent twice takes its results in order.
            found = [_pop(by_key.get(str(key))) if key is not None else None for key in keys]
        return [self._item(result) for result in found]

    def _item(self, result: Any) -> ItemResult | str:
        if not isinstance(result, dict):
            return "the answer has no result for this record"
        error = resolve_pointer(result, self._error) if self._error else None
        error_text = "" if error in (None, "") else error if isinstance(error, str) else json.dumps(error)
        if self._success is not None:
            ok = resolve_pointer(result, self._success) is True
        else:
            ok = not error_text
        detail = json.dumps(result, ensure_ascii=False)[:_DETAIL_LIMIT]
        return ItemResult(ok=ok, error=error_text, detail=detail)


def _as_pointer(name: str | None) -> str | None:
    if name is None or name.startswith("/"):
        return check_pointer(name) if name else name
    return "/" + name.replace("~", "~0").replace("/", "~1")


def _pop(results: list[Any] | None) -> Any:
    return results.pop(0) if results else None
