"""The sandbox's contacts: deterministic seeded ids and the rules a PATCH body must follow."""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from typing import Any

__all__ = [
    "CONTACT_FIELDS",
    "EMAIL_RE",
    "NAMESPACE",
    "contact_id",
    "ensure_seeded",
    "is_indexed",
    "is_seeded",
    "patch_errors",
]

#: Namespace of the deterministic contact ids (``uuid5(NAMESPACE, f"contact-{i}")``).
NAMESPACE = uuid.UUID("e939f681-8060-5d64-a544-d97988252da1")

#: Fields a contact PATCH may set.
CONTACT_FIELDS = ("firstName", "lastName", "email", "phone", "city", "country", "externalId")

#: The email addresses a PATCH may set (``EMAIL_RE.fullmatch(address)``).
EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


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


def ensure_seeded(count: int) -> None:
    """Index the ids of the first ``count`` seeded contacts (a no-op once done).

    Args:
        count: How many seeded contacts must be known.
    """
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


def is_indexed(count: int) -> bool:
    """Return whether :func:`ensure_seeded` has already indexed ``count`` contacts."""
    return count <= _seed_count


def is_seeded(cid: str, count: int) -> bool:
    """Return whether ``cid`` is one of the first ``count`` seeded contacts.

    Args:
        cid: A contact id.
        count: How many contacts are seeded.
    """
    if count > _seed_count:
        ensure_seeded(count)
    index = _seed_index.get(cid)
    return index is not None and index < count


def patch_errors(data: dict[str, Any]) -> dict[str, str]:
    """Check the fields of a PATCH body.

    Args:
        data: The decoded JSON object.

    Returns:
        ``{field: problem}``, empty when the update may be applied.
    """
    errors: dict[str, str] = {}
    for name, value in data.items():
        if name not in CONTACT_FIELDS:
            errors[name] = "unknown field"
        elif value is not None and not isinstance(value, str):
            errors[name] = "must be a string or null"
        elif name == "email" and value is not None and not EMAIL_RE.fullmatch(value):
            errors[name] = "invalid email address"
    return errors
