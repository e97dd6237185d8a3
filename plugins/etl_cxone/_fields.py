"""What the ``cxone`` sink tells ``etl guess`` about the records it sends."""

from __future__ import annotations

from etl_core import SinkField
from etl_core.http import KeyFormat

#: The contact fields a PATCH may set (besides the key), for ``etl guess``.
CONTACT_FIELDS = (
    SinkField("firstName"),
    SinkField("lastName"),
    SinkField("email", rules=("email",)),
    SinkField("phone", rules=("e164",)),
    SinkField("city"),
    SinkField("country"),
    SinkField("externalId"),
)
#: The validate rule that checks a key of each ``key_format``.
KEY_RULES: dict[KeyFormat, tuple[str, ...]] = {"uuid": ("uuid",), "integer": ("integer",), "any": ()}
