"""The sandbox's Admin API bulk endpoints: address-book entries and do-not-call records.

Paths are those of the CXone Admin API, under ``/inContactAPI/services/v{N}.0``:

* ``PUT /address-books/{id}/dynamic-entries[?fullLoad=false]``: upsert dynamic entries by
  ``externalId``; ``202`` with ``entryResults``, one per entry, in order.
* ``POST /address-books/{id}/entries``: create standard entries; ``PUT`` updates them by
  ``addressBookEntryId``; ``200`` with ``entryResults``.
* ``POST /dnc-groups/{groupId}/records``: add do-not-call records; ``200`` with ``recordResults``.

An entry that breaks a rule of its own (no ``externalId``, a bad email address, an unknown
field) gets ``success: false`` and an ``error``, and its neighbours are applied. A request
that cannot be read as a list of entries (an entry that is not a JSON object, a field of
the wrong JSON type, a ``phone`` or ``mobile`` that is not a phone number) is refused whole
with ``400``, and one with too many entries with ``413``: nothing is applied.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from ._contacts import EMAIL_RE

__all__ = ["ADMIN_PREFIX", "Directory"]

#: Start of every Admin API path (``/inContactAPI/services/v34.0/...``).
ADMIN_PREFIX = b"/inContactAPI/services/v"

_ROUTE = re.compile(r"/inContactAPI/services/v[0-9]{1,3}\.0/(address-books|dnc-groups)/([0-9]{1,18})/([a-z-]+)")
#: Fields an address-book entry may have (all strings).
ENTRY_FIELDS = frozenset(
    {"externalId", "firstName", "middleName", "lastName", "company", "phone", "mobile", "email", "addressBookEntryId"}
)
_LISTS = {"dynamic-entries": "addressBookEntries", "entries": "addressBookEntries", "records": "dncGroupRecords"}
_DNC_FIELDS = frozenset({"phoneNumber", "expirationDate"})
_PHONE = re.compile(r"\+?[0-9]{7,15}")
# What the entries' phone fields accept: digits with the usual separators.
_ENTRY_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{5,30}")
_ENTRY_PHONE_FIELDS = ("phone", "mobile")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.]+Z?)?")

#: ``(status, JSON body)`` of an answer.
Answer = tuple[int, Any]


class _Refused(Exception):
    """The whole request is refused; ``args``: (status, message)."""


class Directory:
    """Address books and do-not-call groups, created on first use, empty at start.

    Attributes:
        writes: How many times each ``(kind, container id, entry key)`` was written
            (``kind`` is ``"dynamic"``, ``"standard"`` or ``"dnc"``; the key is the
            ``externalId``, the ``addressBookEntryId`` or the phone number).
    """

    def __init__(self) -> None:
        self._dynamic: dict[str, dict[str, dict[str, Any]]] = {}
        self._standard: dict[str, dict[str, dict[str, Any]]] = {}
        self._dnc: dict[str, dict[str, dict[str, Any]]] = {}
        self._next_entry_id = 1
        self.writes: dict[tuple[str, str, str], int] = {}

    def entries(self, kind: str, container: str) -> dict[str, dict[str, Any]]:
        """Return a copy of one address book's entries or one DNC group's records.

        Args:
            kind: ``"dynamic"``, ``"standard"`` or ``"dnc"``.
            container: The address book or DNC group id.

        Returns:
            ``{key: fields}``: dynamic entries by ``externalId``, standard ones by
            ``addressBookEntryId`` (as text), DNC records by phone number.
        """
        store = {"dynamic": self._dynamic, "standard": self._standard, "dnc": self._dnc}[kind]
        return {key: dict(fields) for key, fields in store.get(container, {}).items()}

    def answer(self, method: bytes, target: bytes, body: bytes, *, max_entries: int) -> Answer:
        """Answer one Admin API request.

        Args:
            method: The request method.
            target: The raw request target, starting with :data:`ADMIN_PREFIX`.
            body: The request body.
            max_entries: Most entries or records in one request (more: ``413``, nothing applied).

        Returns:
            The status and the JSON body to answer with.
        """
        path, _, query = target.decode("latin-1").partition("?")
        route = _ROUTE.fullmatch(path)
        if route is None:
            return 404, {"error": "not_found", "message": "no such resource"}
        family, container, rest = route.groups()
        handlers = {
            ("address-books", "dynamic-entries", b"PUT"): self._upsert_dynamic,
            ("address-books", "entries", b"POST"): self._create_standard,
            ("address-books", "entries", b"PUT"): self._update_standard,
            ("dnc-groups", "records", b"POST"): self._add_dnc,
        }
        handler = handlers.get((family, rest, method))
        if handler is None:
            allowed = sorted(m.decode() for (f, r, m) in handlers if (f, r) == (family, rest))
            if not allowed:
                return 404, {"error": "not_found", "message": "no such resource"}
            return 405, {"error": "method_not_allowed", "message": f"use {' or '.join(allowed)}"}
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": "invalid_json", "message": "request body is not valid JSON"}
        items = payload.get(_LISTS[rest]) if isinstance(payload, dict) else None
        if isinstance(items, list) and len(items) > max_entries:
            return 413, {"error": "too_many_entries", "message": f"at most {max_entries} entries per request"}
        try:
            return handler(container, payload, dict(parse_qsl(query)))
        except _Refused as refused:
            status, message = refused.args
            return status, {"error": "invalid_request", "message": message}

    # ----------------------------------------------------------------- address books

    def _upsert_dynamic(self, book: str, payload: Any, query: dict[str, str]) -> Answer:
        entries = _items(payload, "addressBookEntries", ENTRY_FIELDS)
        stored = self._dynamic.setdefault(book, {})
        results = []
        for entry in entries:
            external_id = entry.get("externalId")
            error = _entry_error(entry) or (None if external_id else "externalId is required")
            if error is not None:
                results.append(_result(False, error, externalId=external_id))
                continue
            assert isinstance(external_id, str)
            created = external_id not in stored
            entry_id = stored[external_id]["addressBookEntryId"] if not created else self._new_entry_id()
            stored[external_id] = {**entry, "addressBookEntryId": entry_id}
            self._count("dynamic", book, external_id)
            results.append(_result(True, None, created=created, addressBookEntryId=entry_id, externalId=external_id))
        if query.get("fullLoad", "false").lower() == "true":
            # The request is the whole book: whatever it did not name goes.
            named = {entry.get("externalId") for entry in entries}
            for external_id in [key for key in stored if key not in named]:
                del stored[external_id]
        return 202, {"entryResults": results}

    def _create_standard(self, book: str, payload: Any, query: dict[str, str]) -> Answer:
        entries = _items(payload, "addressBookEntries", ENTRY_FIELDS - {"addressBookEntryId"})
        stored = self._standard.setdefault(book, {})
        results = []
        for entry in entries:
            error = _entry_error(entry)
            if error is not None:
                results.append(_result(False, error, externalId=entry.get("externalId")))
                continue
            entry_id = self._new_entry_id()
            stored[entry_id] = {**entry, "addressBookEntryId": entry_id}
            self._count("standard", book, entry_id)
            results.append(
                _result(True, None, created=True, addressBookEntryId=entry_id, externalId=entry.get("externalId"))
            )
        return 200, {"entryResults": results}

    def _update_standard(self, book: str, payload: Any, query: dict[str, str]) -> Answer:
        entries = _items(payload, "addressBookEntries", ENTRY_FIELDS)
        stored = self._standard.setdefault(book, {})
        results = []
        for entry in entries:
            entry_id = entry.get("addressBookEntryId")
            error = _entry_error(entry)
            if error is None and entry_id not in stored:
                error = "addressBookEntryId is required" if not entry_id else f"entry {entry_id} not found"
            if error is not None:
                results.append(_result(False, error, addressBookEntryId=entry_id, externalId=entry.get("externalId")))
                continue
            assert isinstance(entry_id, str)
            stored[entry_id].update(entry)
            self._count("standard", book, entry_id)
            results.append(
                _result(True, None, created=False, addressBookEntryId=entry_id, externalId=entry.get("externalId"))
            )
        return 200, {"entryResults": results}

    # ----------------------------------------------------------------- do not call

    def _add_dnc(self, group: str, payload: Any, query: dict[str, str]) -> Answer:
        records = _items(payload, "dncGroupRecords", _DNC_FIELDS)
        stored = self._dnc.setdefault(group, {})
        results = []
        for record in records:
            phone = record.get("phoneNumber")
            expires = record.get("expirationDate")
            if not phone:
                error: str | None = "phoneNumber is required"
            elif not _PHONE.fullmatch(phone):
                error = "invalid phone number"
            elif expires and not _DATE.fullmatch(expires):
                error = "invalid expirationDate (YYYY-MM-DD expected)"
            else:
                error = None
            if error is not None:
                results.append(_result(False, error, phoneNumber=phone))
                continue
            assert isinstance(phone, str)
            stored[phone] = dict(record)
            self._count("dnc", group, phone)
            results.append(_result(True, None, phoneNumber=phone))
        return 200, {"recordResults": results}

    def _new_entry_id(self) -> str:
        entry_id = str(self._next_entry_id)
        self._next_entry_id += 1
        return entry_id

    def _count(self, kind: str, container: str, key: str) -> None:
        writes = self.writes
        writes[kind, container, key] = writes.get((kind, container, key), 0) + 1


def _items(payload: Any, name: str, fields: frozenset[str]) -> list[dict[str, str | None]]:
    """The list ``payload[name]``, each item a JSON object of strings or nulls.

    Raises:
        _Refused: The body does not have that shape; nothing may be applied.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get(name), list):
        raise _Refused(400, f"the body must be a JSON object with a {name} list")
    items = payload[name]
    # Unknown fields are each entry's own error; a known one of the wrong type is the request's.
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _Refused(400, f"{name}[{index}] is not a JSON object")
        for field, value in item.items():
            if field in fields and value is not None and not isinstance(value, str):
                raise _Refused(400, f"{name}[{index}].{field} must be a string")
            if field in fields and field in _ENTRY_PHONE_FIELDS and value and not _ENTRY_PHONE.fullmatch(value):
                raise _Refused(400, f"{name}[{index}].{field} is not a phone number")
    return items


def _entry_error(entry: dict[str, str | None]) -> str | None:
    """The first problem of one address-book entry's own, or None."""
    unknown = sorted(name for name in entry if name not in ENTRY_FIELDS)
    if unknown:
        return f"unknown field {unknown[0]}"
    email = entry.get("email")
    if email and not EMAIL_RE.fullmatch(email):
        return "invalid email address"
    return None


def _result(success: bool, error: str | None, **fields: Any) -> dict[str, Any]:
    return {"success": success, **fields, "error": error}
