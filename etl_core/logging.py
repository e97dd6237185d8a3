"""structlog configuration: JSON lines for log pipelines (plain, ECS or OpenTelemetry), console output for humans.

Secrets never reach the output: values registered with :func:`register_secret` are
replaced wherever they appear, and text fields whose names look like credentials are
masked. A field naming a URL (``url``, ``token_url``) is not a credential, but the
credentials a URL may carry (its user information, credential-named query parameters)
are masked.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO, cast

import structlog

from ._log_formats import LAYOUTS, LOG_FORMATS, exception_fields, stamp_unix_nanos
from ._log_messages import add_message

_MASK = "***"
_CREDENTIAL_NAME = r"secret|password|token|authorization|api[_-]?key|credential"
_SECRET_KEYS = re.compile(_CREDENTIAL_NAME, re.IGNORECASE)
_URL_KEYS = re.compile(r"(?:^|[_-])url$", re.IGNORECASE)
#: The user information of a URL (``user:password@``).
_URL_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")
#: ``NAME=VALUE`` of a query parameter named like a credential.
_URL_CREDENTIAL_PARAM = re.compile(rf"([?&;][^=&;#\s]*(?:{_CREDENTIAL_NAME})[^=&;#\s]*=)[^&;#\s]*", re.IGNORECASE)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in log output from now on.

    Sinks call this with credentials and with every access token they obtain.
    Values shorter than 6 characters are ignored (masking them would garble logs).
    """
    if value and len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def redact_data(value: Any) -> Any:
    """Return ``value`` with every registered secret masked in each string it holds.

    For the run's other sinks of text (the report, a hook's data): mappings, lists and
    tuples are copied at any depth, their keys included; other values are kept as they are.
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return value


def _redact_value(key: str, value: Any) -> Any:
    # Only text can hold a credential: numbers (``token_requests``) are left alone.
    if isinstance(value, str):
        if _URL_KEYS.search(key):
            value = _redact_url(value)
        elif _SECRET_KEYS.search(key):
            return _MASK
        return redact(value) if _secrets else value
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(key, v) for v in value]
    return value


def _redact_url(url: str) -> str:
    """Mask a URL's user information and the values of its credential-named query parameters."""
    url = _URL_USERINFO.sub(f"{_MASK}@", url)
    return _URL_CREDENTIAL_PARAM.sub(rf"\1{_MASK}", url)


def redact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``fields`` masked as a log line's fields are, at any depth.

    Text under a credential-like name (``Authorization``, ``client_secret``, ``token``...)
    is masked whole, the credentials a URL under a ``url`` name may carry are masked, and
    so is every registered secret.
    """
    return {key: _redact_value(str(key), value) for key, value in fields.items()}


def _redact_processor(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return redact_fields(event_dict)


_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-])[A-Za-z0-9.-]*(\.[A-Za-z]{2,})")

#: Field names whose values are personal data, masked when ``mask_pii`` is on.
DEFAULT_PII_FIELDS = ("email", "phone", "firstName", "lastName", "first_name", "last_name", "name", "fullName", "address")


class _PiiMasker:
    """Masks personal data in log fields: named fields wholly, emails anywhere."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = frozenset(fields)

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {key: self._mask(key, value) for key, value in event_dict.items()}

    def _mask(self, key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._mask(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._mask(key, v) for v in value]
        if key in self.fields and value not in (None, ""):
            return _MASK
        if isinstance(value, str) and "@" in value:
            return _EMAIL.sub(r"\1***@\2***\3", value)
        return value


def mask_personal_data(fields: Mapping[str, Any], pii_fields: Sequence[str] = DEFAULT_PII_FIELDS) -> dict[str, Any]:
    """Return ``fields`` masked as log lines are with ``logging.mask_pii``, at any depth.

    Args:
        fields: The values to mask, by name.
        pii_fields: Names whose values are masked whole; email addresses are masked anywhere.
    """
    return _PiiMasker(tuple(pii_fields))(None, "", dict(fields))


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    mask_pii: bool = False,
    pii_fields: tuple[str, ...] = DEFAULT_PII_FIELDS,
) -> None:
    """Configure structlog for the whole process.

    Every line gets a ``message`` for people (see :mod:`._log_messages`); secrets are
    masked in every format, and so is personal data with ``mask_pii``.

    Args:
        level: Lowest level written: debug, info, warning or error.
        fmt: ``json``, ``console``, ``ecs`` (Elastic Common Schema), ``otel``
            (OpenTelemetry log data model), or ``auto`` (console when ``stream`` is a
            terminal, else json).
        stream: Where log lines go (default: stdout).
        mask_pii: Mask personal data: the values of ``pii_fields`` and any email address.
        pii_fields: Field names whose values are masked when ``mask_pii`` is on.

    Raises:
        ValueError: ``fmt`` is none of those.
    """
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(LOG_FORMATS)}")
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        stamp_unix_nanos if fmt == "otel" else structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if mask_pii:
        processors.append(_PiiMasker(pii_fields))
    # Exceptions are rendered before masking, so that it applies to them, and never with
    # the values of frame locals (they may hold credentials). The message is made from
    # the masked fields: it cannot show what they hide.
    exceptions: Any
    if fmt == "console":
        exceptions = structlog.processors.format_exc_info
        render: list[Any] = [
            structlog.dev.ConsoleRenderer(colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback)
        ]
    else:
        if fmt == "json":
            exceptions = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        else:
            exceptions = exception_fields
        render = [LAYOUTS[fmt], structlog.processors.JSONRenderer(sort_keys=False)]
    processors += [exceptions, _redact_processor, add_message, *render]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # One write() per line (message and newline together): shards of run.processes share
        # the parent's stdout, and a line written in two parts could be split by another's.
        logger_factory=structlog.WriteLoggerFactory(cast(TextIO, _LogStream(stream))),
        cache_logger_on_first_use=True,
    )


class _LogStream:
    """Where log lines go: once their reader has gone (``etl run ... | head``), lines are dropped and the run goes on.

    A closed pipe must not stop a run half way, nor end it with a traceback.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        # Point the file at /dev/null, so that what is buffered, and what comes, goes
        # nowhere without an error (the interpreter's own flush at exit included).
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        print("etl: warning: the log output was closed; the run goes on without its log lines", file=sys.stderr)


def get_logger(**bindings: Any) -> Any:
    """Return a structlog logger with ``bindings`` attached."""
    return structlog.get_logger("etl").bind(**bindings) if bindings else structlog.get_logger("etl")
