"""``etl preview CONFIG``: what the first records become, and the requests a run would send.

For the user writing a config. It applies the transforms as a run does
(:func:`~etl_core._reader.apply_transforms`) and asks the sink to describe each request
(:meth:`~etl_core.Sink.describe`, as ``--dry-run`` does), but unlike a dry run it stops
after the first records, ignores the checkpoints of earlier runs and writes nothing: no
rejects, report, state or lease. Nothing is sent and the network is never used.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._arguments import positive_int

if TYPE_CHECKING:
    from ._outcome import Result
    from .base import Record, Sink, Source, Transform
    from .config import PipelineConfig
    from .registry import PluginManager

#: Records shown when ``-n`` is not given.
DEFAULT_RECORDS = 20
#: Control characters a terminal would act on (C0, DEL, C1); JSON escapes only the C0 ones.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def add_preview_command(commands: argparse._SubParsersAction[Any], pm: PluginManager) -> None:
    """Add ``etl preview`` to the ``etl`` command line.

    Args:
        commands: The subparsers of ``etl``.
        pm: The plugin manager (the plugins that read, transform and describe).
    """
    parser = commands.add_parser(
        "preview",
        help="show what the first records become and the requests a run would send; send nothing",
        description="Read the first records, apply the transforms and show, for each, the input, the mapped "
        "fields and the request the sink would send (or why the record is rejected). Ignores the checkpoints "
        "of earlier runs, writes no file, sends nothing.",
    )
    parser.add_argument("config", help="pipeline config file (YAML)")
    parser.add_argument(
        "-n", "--records", type=positive_int, default=DEFAULT_RECORDS, metavar="N",
        help=f"records to show (default: {DEFAULT_RECORDS})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per record (JSON Lines)")
    parser.set_defaults(handler=functools.partial(_cmd_preview, pm=pm))


def _cmd_preview(args: argparse.Namespace, pm: PluginManager) -> int:
    from ._errors import FatalError
    from .config import load_config
    from .logging import configure_logging, redact, register_secret
    from .registry import Registry

    config = load_config(args.config, Registry(pm))
    settings = config.model.logging
    # Plugins are not expected to log here; should one, stdout stays the preview's.
    configure_logging(
        level=settings.level, fmt=settings.format, stream=sys.stderr, mask_pii=settings.mask_pii,
        pii_fields=tuple(settings.pii_fields),
    )
    for secret in config.secrets():
        register_secret(secret)
    preview = Preview(config)
    summary = sys.stderr if args.json else sys.stdout
    try:
        for entry in preview.entries(args.records):
            print(_json(entry) if args.json else _human(entry), flush=True)
        print(preview.summary(), file=summary)
    except FatalError as exc:  # the input cannot be read on (as it would stop a run)
        print(f"etl: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `etl preview ... | head`: the reader has seen enough
        # Python would complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class Preview:
    """The first records of a pipeline, each with its fields and its request or its rejection.

    Args:
        config: The validated configuration.

    Raises:
        ConfigError: A plugin's check or the input check failed, as ``etl validate`` reports it.
    """

    def __init__(self, config: PipelineConfig) -> None:
        from ._input_check import check_before_sending

        self.config = config
        self.source: Source = config.source[0](config.source[1])
        self.transforms: list[Transform] = [cls(options) for cls, options in config.transforms]
        self.sink: Sink = config.sink[0](config.sink[1])
        check_before_sending(config, self.source, self.transforms, self.sink)
        self.shown = self.to_send = self.rejected = 0
        self.more = False  # the input has records past the ones shown
        self._first_lines: dict[str, int] = {}  # key -> line, for run.duplicate_keys: reject

    def entries(self, count: int) -> Iterator[dict[str, Any]]:
        """Yield the first ``count`` records' entries, masked (see :meth:`entry`).

        Raises:
            FatalError: The source cannot read its input on.
        """
        from .logging import mask_personal_data, redact_fields

        settings = self.config.model.logging
        records = iter(self.source.read())
        try:
            for record in records:
                if self.shown == count:
                    self.more = True
                    return
                entry = self.entry(record)
                self.shown += 1
                if entry["outcome"] == "send":
                    self.to_send += 1
                else:
                    self.rejected += 1
                if settings.mask_pii:
                    entry = mask_personal_data(entry, settings.pii_fields)
                yield redact_fields(entry)
        finally:
            close = getattr(records, "close", None)
            if close is not None:  # a generator: let it close its file now
                close()

    def entry(self, record: Record) -> dict[str, Any]:
        """Return what becomes of ``record`` in a run that ignores the checkpoints.

        Returns:
            ``line``, ``key``, ``outcome`` (``send`` or ``rejected``), ``input`` (the fields
            as read), ``fields`` (as the transforms made them, or as the one that rejected
            the record got them; None when the source could not read the record), then
            ``request`` (the sink's description) or ``stage``, ``plugin`` and ``reason``.
        """
        from ._errors import RecordError
        from ._outcome import Outcome, Result
        from ._reader import apply_transforms, duplicate_rejection

        entry: dict[str, Any] = {
            "line": record.line,
            "key": None,
            "outcome": "rejected",
            "input": dict(record.raw if record.raw is not None else record.data),
            "fields": None,
        }
        if record.error is not None:
            return {**entry, **_rejection(Result(Outcome.REJECTED, "source", self.source.name, reason=record.error))}
        data, rejection = apply_transforms(record.data, self.transforms)
        entry["fields"] = data
        if rejection is not None:
            return {**entry, **_rejection(rejection)}
        record.data = data
        key_field = self.config.model.key
        if key_field is not None and (value := data.get(key_field)) is not None:
            record.key = entry["key"] = str(value)
            if self.config.model.run.duplicate_keys == "reject":
                first_line = self._first_lines.setdefault(record.key, record.line)
                if first_line != record.line:
                    return {**entry, **_rejection(duplicate_rejection(key_field, first_line))}
        try:
            request = self.sink.describe(record)
        except RecordError as exc:
            return {**entry, **_rejection(Result(Outcome.REJECTED, "sink", self.sink.name, reason=exc.reason))}
        except Exception as exc:  # noqa: BLE001 - a plugin bug: shown, like a transform's
            reason = f"unexpected error: {type(exc).__name__}: {exc}"
            return {**entry, **_rejection(Result(Outcome.REJECTED, "sink", self.sink.name, reason=reason))}
        return {**entry, "outcome": "send", "request": request}

    def summary(self) -> str:
        """The counts, and what a run does with the records shown and the rest."""
        model = self.config.model
        rejects = os.path.join(model.output.dir, model.output.rejects)
        lines = [
            f"{self.shown} shown: {self.to_send} would be sent, {self.rejected} rejected",
            ("More records follow (not read: `etl run --dry-run` checks every one). " if self.more else "That is the whole input. ")
            + f"A run sends what passes with sink {self.sink.name!r} and writes what is rejected to {rejects}.",
        ]
        state = os.path.join(model.output.dir, model.state.path)
        if model.key is not None and model.state.enabled and os.path.exists(state):
            lines.append(
                f"Earlier runs' checkpoints ({state}) were ignored: a run skips the records they delivered unchanged."
            )
        return "\n".join(_plain(line) for line in lines)


def _rejection(result: Result) -> dict[str, Any]:
    return {"stage": result.stage, "plugin": result.plugin, "reason": result.reason}


def _human(entry: dict[str, Any]) -> str:
    """One record for the terminal: a heading line, then aligned ``label  value`` lines."""
    heading = f"line {entry['line']}"
    if entry["key"] is not None:
        heading += f"  key {entry['key']}"
    if entry["outcome"] == "send":
        heading += "  would be sent"
    else:
        heading += f"  rejected ({entry['stage']} {entry['plugin']})"
    rows: list[tuple[str, str]] = [("input", _json(entry["input"]))]
    if entry["fields"] is not None:
        rows.append(("fields", _json(entry["fields"])))
    if entry["outcome"] == "send":
        rows += _request_rows(entry["request"])
    else:
        rows.append(("reason", str(entry["reason"])))
    width = max(len(label) for label, _ in rows)
    return "\n".join([_plain(heading), *(_plain(f"  {label.ljust(width)}  {value}") for label, value in rows), ""])


def _request_rows(request: Any) -> list[tuple[str, str]]:
    """``request  METHOD URL`` and one row per other part, for an HTTP-like description."""
    if not isinstance(request, dict):
        return [("request", _json(request))]
    method, url = request.get("method"), request.get("url")
    if not (isinstance(method, str) and isinstance(url, str)):
        return [("request", _json(request))]
    others = [(str(name), _json(value)) for name, value in request.items() if name not in ("method", "url")]
    return [("request", f"{method} {url}"), *others]


def _json(value: Any) -> str:
    """Compact JSON: whitespace in values shows, and no control character reaches the terminal."""
    return _plain(json.dumps(value, ensure_ascii=False, default=str))


def _plain(text: str) -> str:
    """One line of ``text``: its control characters (a value may hold any, line breaks too) escaped."""
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
