"""Safe URL building: config-time checks of URLs and path templates, per-record keys.

A record's values are untrusted (they come from a CSV file), so each placeholder
value is validated and percent-encoded as exactly one path segment: no value can
add a segment, a query or a fragment, or climb out of the template with ``..``.
Neither can the template itself: httpx and servers resolve ``.`` and ``..`` segments,
so ``/contacts/{id}/../../admin`` would send every record to ``/admin``.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from .._errors import RecordRejected

KeyFormat = Literal["uuid", "integer", "any"]

_DOT_SEGMENTS = (".", "..")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# Literal template text: printable ASCII except space, '#', and braces (placeholders only).
_LITERAL = re.compile(r"[!-~]*", re.ASCII)
_KEY_PATTERNS = {
    "uuid": re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII),
    "integer": re.compile(r"[0-9]{1,20}", re.ASCII),
}


def check_http_url(url: str, *, allow_query: bool = False) -> str:
    """Check that ``url`` is an absolute http(s) URL with a host and nothing secret in it.

    Args:
        url: The URL to check.
        allow_query: Accept a query string (a base URL must not have one, since a
            path is appended to it).

    Returns:
        ``url`` without a trailing slash, ready to have a path appended.

    Raises:
        ValueError: The URL is unusable; the message says why.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; use client_id and client_secret")
    if parts.query and not allow_query:
        raise ValueError("must not contain a query ('?')")
    if parts.fragment or "#" in url:
        raise ValueError("must not contain a fragment ('#')")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return url.rstrip("/")


def check_secure(url: str, *, allow_insecure_http: bool) -> None:
    """Refuse plain ``http://`` unless the host is loopback or it was explicitly allowed.

    Raises:
        ValueError: Credentials and records would cross the network unencrypted.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname or ""):
        raise ValueError(
            "plain http:// would send credentials and records unencrypted; "
            "use https:// or set allow_insecure_http: true"
        )


def display_url(url: str) -> str:
    """Return ``url`` without its query, fit for error messages and logs."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def is_loopback(host: str) -> bool:
    """Return True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def template_fields(template: str) -> tuple[str, ...]:
    """Return the placeholder names of a path template, in order.

    Raises:
        ValueError: The template does not start with ``/``, has a placeholder that is
            not a simple field name, has characters that do not belong in a path, or
            has a ``.`` or ``..`` segment.
    """
    if not template.startswith("/"):
        raise ValueError("must start with '/'")
    names = []
    for index, part in enumerate(_PLACEHOLDER.split(template)):
        if index % 2:
            if not _NAME.fullmatch(part):
                raise ValueError(f"placeholder {{{part}}} must be a simple field name (letters, digits, '_')")
            names.append(part)
        elif not _LITERAL.fullmatch(part) or any(char in part for char in "{}#"):
            raise ValueError("may only contain printable ASCII without spaces, '#' or unmatched braces")
    if any(_is_dot_segment(segment) for segment in template.split("/")):
        raise ValueError("must not have a '.' or '..' segment, which is resolved away (/a/b/../c is /a/c)")
    return tuple(names)


class _Value(NamedTuple):
    """A placeholder of a compiled path template: the field and the format its value must have."""

    name: str
    key_format: KeyFormat


class PathTemplate:
    """A path template checked and split once, filled per record by :meth:`render`.

    Args:
        template: The path template, ``/contacts/{id}``.
        key_field: The placeholder holding the record's key, validated as ``key_format``
            (the others as any one path segment).
        key_format: What the key must look like.

    Raises:
        ValueError: The template is invalid (see :func:`template_fields`).
    """

    def __init__(self, template: str, *, key_field: str, key_format: KeyFormat) -> None:
        self.fields = template_fields(template)
        # Literal text (the slashes included), placeholders that are a whole segment, and
        # segments of text and placeholders mixed (checked as a whole): what is left per
        # record is each value's check and encoding.
        self._pieces: list[str | _Value | tuple[str | _Value, ...]] = []
        for index, segment in enumerate(template.split("/")):  # placeholder names hold no "/"
            parts = [
                _Value(part, key_format if part == key_field else "any") if odd % 2 else part
                for odd, part in enumerate(_PLACEHOLDER.split(segment))
            ]
            piece = (
                segment if len(parts) == 1
                else parts[1] if len(parts) == 3 and parts[0] == parts[2] == ""
                else tuple(part for part in parts if part != "")
            )
            self._literal("/" if index else "")
            if isinstance(piece, str):
                self._literal(piece)
            else:
                self._pieces.append(piece)

    def _literal(self, text: str) -> None:
        if self._pieces and isinstance(self._pieces[-1], str):
            self._pieces[-1] += text
        elif text:
            self._pieces.append(text)

    def render(self, data: Mapping[str, Any]) -> str:
        """Fill the template from a record, each value encoded as one path segment.

        Raises:
            RecordRejected: A placeholder value is missing, empty, a dot segment, or (for
                the key) not in its format; or the values and the text around them make a
                dot segment (``{a}{b}`` with two ``.``).
        """
        rendered = []
        for piece in self._pieces:
            if isinstance(piece, str):
                rendered.append(piece)
            elif isinstance(piece, _Value):
                # A whole segment: segment_value refuses the dot segments, and the encoded
                # value has no ';' of its own. A uuid or an integer has nothing to encode.
                value = segment_value(data, piece.name, piece.key_format)
                rendered.append(value if piece.key_format != "any" else urllib.parse.quote(value, safe=""))
            else:
                rendered.append(self._joined(piece, data))
        return "".join(rendered)

    @staticmethod
    def _joined(segment: tuple[str | _Value, ...], data: Mapping[str, Any]) -> str:
        """A segment of text and placeholders, filled (and checked as a whole)."""
        text = "".join(
            part if isinstance(part, str) else urllib.parse.quote(segment_value(data, *part), safe="")
            for part in segment
        )
        if _is_dot_segment(text):
            first = next(part for part in segment if isinstance(part, _Value))
            raise RecordRejected(f"{first.name}: not a valid path segment")
        return text


def render_path(template: str, data: Mapping[str, Any], *, key_field: str, key_format: KeyFormat) -> str:
    """Fill a path template from a record, each value encoded as one path segment
    (:class:`PathTemplate`, compiled for this one call).

    Raises:
        ValueError: The template is invalid.
        RecordRejected: See :meth:`PathTemplate.render`.
    """
    return PathTemplate(template, key_field=key_field, key_format=key_format).render(data)


def segment_value(data: Mapping[str, Any], name: str, key_format: KeyFormat) -> str:
    """Return the validated text of ``data[name]`` for use in a URL.

    Raises:
        RecordRejected: The value is missing, empty, not text or an integer, ``.`` or
            ``..`` (which clients and servers resolve as "this/parent directory"), or
            does not match ``key_format``.
    """
    value = data.get(name)
    if value is None or value == "":
        raise RecordRejected(f"{name}: missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordRejected(f"{name}: not a valid {_format_name(key_format)}")
    text = str(value)
    pattern = _KEY_PATTERNS.get(key_format)
    if pattern is not None and not pattern.fullmatch(text):
        raise RecordRejected(f"{name}: not a valid {key_format}")
    if text in (".", ".."):
        raise RecordRejected(f"{name}: not a valid path segment")
    return text


def _is_dot_segment(segment: str) -> bool:
    """Tell whether a path segment means "this" or "the parent" directory.

    Percent-encoded dots count, and so does a segment followed by ``;`` parameters,
    which some servers strip before resolving it (``..;x``).
    """
    return urllib.parse.unquote(segment.partition(";")[0]) in _DOT_SEGMENTS


def _format_name(key_format: KeyFormat) -> str:
    return "path segment" if key_format == "any" else key_format
