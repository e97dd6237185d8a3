"""What a request carries to prove who sends it."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Credential:
    """One header that authenticates a request.

    Attributes:
        header: The header's name, e.g. ``Authorization``.
        value: The header's value, e.g. ``Bearer eyJ...``.
        token: The secret inside ``value`` (the access token, the API key).
    """

    header: str
    value: str
    token: str

    def __repr__(self) -> str:
        return f"Credential(header={self.header!r})"
