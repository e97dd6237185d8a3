"""The requests of the ``http`` sink: URL and JSON body, filled from a record's fields."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from etl_core import Record, RecordRejected
from etl_core.http import render_path, segment_value, template_fields

from ._options import HttpOptions
from ._templates import OMIT, Template


class RequestBuilder:
    """The path, query and body templates of the options, compiled once.

    Args:
        options: The sink's validated options.
    """

    def __init__(self, options: HttpOptions) -> None:
        self._options = options
        self.path_fields = template_fields(options.path)
        self._query = {name: Template(text) for name, text in options.query.items()}
        self._body = Template(options.body) if options.body is not None else None
        # Fields the URL uses: the default body leaves them out.
        self._request_fields = set(self.path_fields).union(*(t.fields for t in self._query.values()))

    def item(self, record: Record) -> Any:
        """The record's body (its item in batch mode); None for a DELETE without a body template.

        Raises:
            RecordRejected: The key is invalid, or the body would be empty.
        """
        options = self._options
        data = record.data
        if options.key_field is not None and options.key_field not in self.path_fields:
            segment_value(data, options.key_field, options.key_format)  # validated even when unused
        if self._body is not None:
            body = self._body.render(data)
        elif options.method == "DELETE":
            return None
        else:
            body = {name: value for name, value in data.items() if name not in self._request_fields and value not in (None, "")}
            if all(name == options.key_field for name in body):
                raise RecordRejected("nothing to send")
        if body is OMIT or body == {}:
            raise RecordRejected("nothing to send")
        return body

    def url(self, base_url: str, data: dict[str, Any]) -> str:
        """``base_url`` with the path and the query filled from ``data``.

        Raises:
            RecordRejected: A path value is invalid.
        """
        options = self._options
        path = render_path(options.path, data, key_field=options.key_field or "", key_format=options.key_format)
        url = base_url + path
        query = {}
        for name, template in self._query.items():
            value = template.render(data)
            if value is not OMIT:
                query[name] = value if isinstance(value, str) else json.dumps(value)
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        return url


def json_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, the body of a request."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()
