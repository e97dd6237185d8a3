"""The status policy: what each HTTP status of an answer means for the records it carried."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

__all__ = ["DEFAULT_POLICY", "Action", "StatusPolicy", "parse_status_key"]

#: What an answer means: delivered; try again later; slow down (with Retry-After); refused
#: for good; refused for good and listed in the missing file; stop the run.
Action = Literal["ok", "retry", "throttle", "reject", "missing", "stop"]

#: The rules every policy starts from; a config's ``status`` adds to and overrides them.
DEFAULT_POLICY: Mapping[str, Action] = {
    "2xx": "ok",
    "3xx": "reject",
    "4xx": "reject",
    "401": "stop",
    "404": "missing",
    "429": "throttle",
    "5xx": "retry",
    "503": "throttle",
}

_KEY = re.compile(r"([1-5])xx|([1-5][0-9]{2})(?:-([1-5][0-9]{2}))?")


def parse_status_key(key: str) -> tuple[int, int]:
    """Parse one key of a status policy: ``"404"``, ``"4xx"`` or ``"500-599"``.

    Args:
        key: The key as written in the config.

    Returns:
        The first and last status it covers.

    Raises:
        ValueError: The key is none of those forms, or a range runs backwards.
    """
    match = _KEY.fullmatch(key.strip().lower())
    if match is None:
        raise ValueError(f"{key!r} is not a status: use e.g. 404, 4xx or 500-599")
    hundreds, first, last = match.groups()
    if hundreds is not None:
        return int(hundreds) * 100, int(hundreds) * 100 + 99
    low, high = int(first), int(last or first)
    if high < low:
        raise ValueError(f"{key!r}: the range runs backwards")
    return low, high


class StatusPolicy:
    """Maps each status to an :data:`Action`; the narrowest matching rule wins.

    Args:
        rules: ``{key: action}`` from the config; added to :data:`DEFAULT_POLICY`, and
            at equal width a config's rule wins over a default one.

    Raises:
        ValueError: A key cannot be parsed (see :func:`parse_status_key`).
    """

    def __init__(self, rules: Mapping[str, Action]) -> None:
        ranked: list[tuple[int, int, int, int, Action]] = []
        for precedence, source in enumerate((DEFAULT_POLICY, rules)):
            for key, action in source.items():
                low, high = parse_status_key(key)
                ranked.append((high - low, -precedence, low, high, action))
        ranked.sort(key=lambda rule: rule[:2])
        self._rules = [(low, high, action) for _, _, low, high, action in ranked]
        self._cache: dict[int, Action] = {}

    def action(self, status: int) -> Action:
        """Return what an answer with ``status`` means (``reject`` when no rule covers it)."""
        cached = self._cache.get(status)
        if cached is not None:
            return cached
        action: Action = next((act for low, high, act in self._rules if low <= status <= high), "reject")
        self._cache[status] = action
        return action
