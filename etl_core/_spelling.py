"""Did you mean...? The closest of some names to a name a user wrote."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence


def closest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate that differs from ``name`` only in case, spaces, ``_``/``-`` or camelCase, else the closest spelling."""
    key = _loose(name)
    for candidate in candidates:
        if _loose(candidate) == key:
            return candidate
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return close[0] if close else None


def _loose(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name).casefold()
