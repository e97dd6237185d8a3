"""The layouts of a JSON log line: ``json`` (the project's own), ``ecs`` and ``otel``.

Each layout is the last structlog processor before the JSON renderer: it takes the
line's fields (already masked, with ``timestamp``, ``level``, ``event`` and
``message``) and arranges them under the names a log pipeline expects.

* ``ecs``: the Elastic Common Schema, as the ecs-logging libraries write it:
  ``@timestamp``, ``log.level``, ``message`` and ``ecs.version`` first, then
  ``event.action`` (the event's name), ``labels`` (``run_id``, ``pipeline``,
  ``stage``), ``error`` for an exception, and the event's own fields under ``etl``
  (at the top they could clash with ECS field sets such as ``source`` or ``url``).
* ``otel``: the OpenTelemetry log data model: ``timestamp`` (nanoseconds since the Unix
  epoch, as a decimal string, as OTLP/JSON writes 64-bit integers), ``severity_text``,
  ``severity_number``, ``body`` (the message), ``event_name`` and ``attributes``
  (every field, an exception as ``exception.type``, ``exception.message`` and
  ``exception.stacktrace``), with ``resource`` naming the service.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, Literal, get_args

#: The values of ``logging.format`` and ``--log-format``.
LogFormat = Literal["auto", "json", "console", "ecs", "otel"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)

#: The ECS version the ``ecs`` layout follows.
ECS_VERSION = "8.11.0"
#: The service name in ``ecs`` and ``otel`` lines.
SERVICE = "etl"
#: The ECS object that holds an event's own fields.
_ECS_NAMESPACE = "etl"
#: Fields of every line of a run: ECS ``labels`` (keyword values, to filter on).
_RUN_FIELDS = ("run_id", "pipeline", "stage")
#: OpenTelemetry severity numbers: the first of each range (DEBUG 5-8, INFO 9-12...).
_SEVERITY_NUMBERS = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}

Processor = Callable[[Any, str, dict[str, Any]], Any]


def json_layout(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """``json``: the fields as they are, ``timestamp``, ``level``, ``event`` and ``message`` first."""
    # What log shippers look for first, and easier to read raw.
    leading = ("timestamp", "level", "event", "message")
    ordered: dict[str, Any] = {key: event_dict.pop(key) for key in leading if key in event_dict}
    ordered.update(event_dict)
    return ordered


def exception_fields(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Replace ``exc_info`` by ``exception``: its ``type``, ``message`` and ``stacktrace`` (text).

    The stack trace is Python's own, which never shows the values of local variables
    (they may hold credentials).
    """
    exc = _exception(event_dict.pop("exc_info", None))
    if exc is not None:
        event_dict["exception"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "stacktrace": "".join(traceback.format_exception(exc)).rstrip("\n"),
        }
    return event_dict


def stamp_unix_nanos(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Add ``timestamp``: nanoseconds since the Unix epoch, as a decimal string (for ``otel``)."""
    event_dict["timestamp"] = str(time.time_ns())
    return event_dict


def ecs_layout(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """``ecs``: the Elastic Common Schema (see the module docstring)."""
    line: dict[str, Any] = {
        "@timestamp": event_dict.pop("timestamp", None),
        "log.level": event_dict.pop("level", None),
        "message": event_dict.pop("message", None),
        "ecs.version": ECS_VERSION,
        "event": {"action": event_dict.pop("event", None), "dataset": f"{SERVICE}.log"},
        "service": {"name": SERVICE},
    }
    labels = {name: event_dict.pop(name) for name in _RUN_FIELDS if name in event_dict}
    if labels:
        line["labels"] = labels
    exception = event_dict.pop("exception", None)
    if isinstance(exception, dict):
        line["error"] = {
            "type": exception.get("type"),
            "message": exception.get("message"),
            "stack_trace": exception.get("stacktrace"),
        }
    if event_dict:
        line[_ECS_NAMESPACE] = event_dict
    return line


def otel_layout(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """``otel``: the OpenTelemetry log data model (see the module docstring)."""
    level = event_dict.pop("level", "info")
    line: dict[str, Any] = {
        "timestamp": event_dict.pop("timestamp", None),
        "severity_text": level,
        "severity_number": _SEVERITY_NUMBERS.get(level, _SEVERITY_NUMBERS["info"]),
        "body": event_dict.pop("message", None),
        "event_name": event_dict.pop("event", None),
    }
    exception = event_dict.pop("exception", None)
    if isinstance(exception, dict):
        event_dict.update({f"exception.{name}": value for name, value in exception.items()})
    line["attributes"] = event_dict
    line["resource"] = {"service.name": SERVICE}
    return line


#: The layout of each JSON format.
LAYOUTS: dict[str, Processor] = {"json": json_layout, "ecs": ecs_layout, "otel": otel_layout}


def _exception(exc_info: Any) -> BaseException | None:
    """The exception an ``exc_info`` argument names (``True``: the one being handled)."""
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1] if len(exc_info) == 3 and isinstance(exc_info[1], BaseException) else None
    if exc_info:
        return sys.exception()
    return None
