"""The requests of the ``http`` sink: URL and JSON body, filled from a record's fields."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from etl_core import Record, RecordRejected
from etl_core.http import PathTemplate, segment_value

from ._options import HttpOptions
from ._templates import OMIT, Template


class RequestBuilder:
    """The path, query and body templates of the options, compiled once.

    Args:
        options: The sink's validated options.
        body_fields: Without a body template, the record fields the body may hold (empty
            ones are still left out); None: every field the URL does not use.
        nothing: The reason of a record whose body would hold no field but the key.
    """

    def __init__(self, options: HttpOptions, *, body_fields: list[str] | None = None, nothing: str = "nothing to send") -> None:
        self._options = options
        self._body_fields = body_fields
        self._nothing = nothing
        self._path = PathTemplate(options.path, key_field=options.key_field or "", key_format=options.key_format)
        self.path_fields = self._path.fields
        self._query = {name: Template(text) for name, text in options.query.items()}
        self._body = Template(options.body) if options.body is not None else None
        # Fields the URL uses: the default body leaves them out.
        self._request_fields = set(self.path_fields).union(*(t.fields for t in self._query.values()))

    def item(self, record: Record) -> Any:
        """The record's body (its item in batch mode); None for a DELETE without a body template.

        Raises:
            RecordRejected: The key is invalid, or the body would be empty.
        """
        self.check_key(record.data)
        return self._item(record.data)

    def request(self, record: Record) -> tuple[str, Any]:
        """The record's URL (without a base) and body: the key checked first, then the path, then the body.

        Raises:
            RecordRejected: The key or a path value is invalid, or the body would be empty.
        """
        self.check_key(record.data)
        return self.url("", record.data), self._item(record.data)

    def check_key(self, data: dict[str, Any]) -> None:
        """Validate the key when the path does not (it is validated even when unused).

        Raises:
            RecordRejected: The key is missing or not of ``key_format``.
        """
        options = self._options
        if options.key_field is not None and options.key_field not in self.path_fields:
            segment_value(data, options.key_field, options.key_format)

    def _item(self, data: dict[str, Any]) -> Any:
        options = self._options
        if self._body is not None:
            body = self._body.render(data)
        elif options.method == "DELETE":
            return None
        else:
            names = self._body_fields if self._body_fields is not None else [n for n in data if n not in self._request_fields]
            body = {name: data[name] for name in names if data.get(name) not in (None, "")}
            # Identifiers alone (when body_fields lists them) would change nothing.
            if all(name == options.key_field or name in self._request_fields for name in body):
                raise RecordRejected(self._nothing)
        if body is OMIT or body == {}:
            raise RecordRejected(self._nothing)
        return body

    def url(self, base_url: str, data: dict[str, Any]) -> str:
        """``base_url`` with the path and the query filled from ``data``.

        Raises:
            RecordRejected: A path value is invalid.
        """
        url = base_url + self._path.render(data)
        query = {}
        for name, template in self._query.items():
            value = template.render(data)
            if value is not OMIT:
                query[name] = value if isinstance(value, str) else json.dumps(value)
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        return url


#: Compact JSON, the ``http`` sink's default.
COMPACT = (",", ":")


def json_bytes(value: Any, separators: tuple[str, str] = COMPACT) -> bytes:
    """``value`` as UTF-8 JSON (compact by default), the body of a request."""
    return json.dumps(value, ensure_ascii=False, separators=separators, default=str).encode()
