"""``etl guess FILE.csv [--sink NAME] [-o CONFIG [--force]]``: write a starter config for a CSV file.

Reads the start of the file (:data:`~._guess.SAMPLE_BYTES`), guesses how to read it
(:mod:`._guess`), maps its columns to the fields the sink describes
(:mod:`._guess_fields`), checks the sample's values with the installed ``validate``
transform itself, and writes the config (:mod:`._guess_config`).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, PluginError

if TYPE_CHECKING:
    from ._guess_fields import RuleCheck
    from .base import Sink, SinkField
    from .registry import Kind, PluginManager, Registry


def add_guess_command(commands: argparse._SubParsersAction[Any], pm: PluginManager) -> None:
    """Add ``etl guess`` to the ``etl`` parser."""
    parser = commands.add_parser(
        "guess",
        help="write a starter config for a CSV file (encoding, delimiter, columns, rules)",
        description="Guess how to read a CSV file (encoding, delimiter, header) and which column feeds "
        "each field of the sink, and write a commented config that reads it: to stdout, or to CONFIG.",
    )
    parser.add_argument("file", help="the CSV file")
    parser.add_argument(
        "--sink", help="the sink to send to (default: the only installed sink that describes the fields it takes)"
    )
    parser.add_argument("-o", "--output", metavar="CONFIG", help="write the config to this file instead of stdout")
    parser.add_argument("--force", action="store_true", help="overwrite CONFIG if it exists")
    parser.set_defaults(handler=functools.partial(_cmd_guess, pm=pm))


def _cmd_guess(args: argparse.Namespace, pm: PluginManager) -> int:
    from ._guess import SAMPLE_BYTES, sniff
    from ._guess_config import MAP, SOURCE, VALIDATE, Target, render_config
    from ._guess_fields import plan_fields
    from .base import Sink
    from .registry import Registry

    registry = Registry(pm)
    used: tuple[tuple[Kind, str], ...] = (("source", SOURCE), ("transform", MAP), ("transform", VALIDATE))
    for kind, name in used:
        if name not in registry.names(kind):
            raise PluginError(f"etl guess writes configs for the {name!r} {kind}, which is not installed")
    sink_name = args.sink or _default_sink(registry)
    sink = registry.get("sink", sink_name)
    assert issubclass(sink, Sink)
    check = _rule_check(registry)
    fields = _sink_fields(sink, check)
    data, complete = _read_start(args.file, SAMPLE_BYTES)
    try:
        sniffed = sniff(data, complete=complete)
    except ConfigError as exc:
        raise ConfigError(exc.message, source=args.file) from None
    plan = plan_fields(sniffed, fields, check, sink=sink_name)
    if not plan.matches:
        wanted = ", ".join(field.name for field in fields)
        raise ConfigError(f"no column matches a field of the {sink_name} sink ({wanted})", source=args.file)
    has_sandbox = any("open_sandbox" in vars(cls) for cls in sink.__mro__ if cls is not Sink)
    target = Target(sink_name, sink.Options, has_sandbox)
    text = render_config(path=args.file, sniffed=sniffed, plan=plan, target=target, config=args.output or "CONFIG")
    if args.output:
        _write(args.output, text, force=args.force, source=args.file)
    else:
        sys.stdout.write(text)
    mapped = len(plan.matches)
    print(
        f"etl guess: {sniffed.encoding}, {sniffed.delimiter!r} delimited, {'a' if sniffed.header else 'no'} header; "
        f"{mapped} of {len(sniffed.names)} columns sent to the {sink_name} sink"
        + (f"; wrote {args.output}" if args.output else ""),
        file=sys.stderr,
    )
    if plan.key is None and any(field.key for field in fields):
        print(f"etl guess: warning: {plan.key_note}", file=sys.stderr)
    return 0


def _default_sink(registry: Registry) -> str:
    """The only installed sink that describes its fields."""
    from .base import Sink

    describing = [
        name for name in registry.names("sink") if issubclass(sink := registry.get("sink", name), Sink) and sink.guess_fields()
    ]
    if len(describing) == 1:
        return describing[0]
    installed = ", ".join(registry.names("sink"))
    if describing:
        raise ConfigError(f"name the sink with --sink: {', '.join(describing)} all describe their fields (installed: {installed})")
    raise ConfigError(f"name the sink with --sink: no installed sink describes its fields (installed: {installed})")


def _sink_fields(sink: type[Sink], check: RuleCheck) -> tuple[SinkField, ...]:
    """The sink's fields, each suggested rule checked to be one the validate transform has."""
    from .base import SinkField

    try:
        fields = tuple(sink.guess_fields())
    except Exception as exc:  # any failure of plugin code
        raise PluginError(f"sink {sink.name!r}: guess_fields() raised {type(exc).__name__}: {exc}") from exc
    for field in fields:
        if not isinstance(field, SinkField):
            raise PluginError(f"sink {sink.name!r}: guess_fields() returned {field!r}, not a SinkField")
        for rule in field.rules:
            try:
                check(rule, "")
            except ValueError:  # the validate transform's options refused the rule
                raise PluginError(
                    f"sink {sink.name!r}: guess_fields() suggests the rule {rule!r} for {field.name!r}, "
                    "which the validate transform does not have"
                ) from None
    return fields


def _rule_check(registry: Registry) -> RuleCheck:
    """Whether a value passes a rule, as the installed ``validate`` transform judges it."""
    from ._errors import RecordRejected
    from ._guess_config import VALIDATE

    validate = registry.get("transform", VALIDATE)

    @functools.cache
    def transform(rule: str) -> Any:
        return validate(validate.Options.model_validate({"fields": {"value": [rule]}}))

    def check(rule: str, value: str) -> bool:
        try:
            transform(rule).apply({"value": value})
        except RecordRejected:
            return False
        return True

    return check


def _read_start(path: str, size: int) -> tuple[bytes, bool]:
    """The first ``size`` bytes of the file, and whether that is all of it."""
    from ._regular_file import read_start

    data = read_start(path, size + 1, what="it")
    if not data:
        raise ConfigError("the file is empty", source=path)
    return data[:size], len(data) <= size


def _write(path: str, text: str, *, force: bool, source: str) -> None:
    """Write the config, refusing to replace a file unless ``force``, and never the CSV file itself."""
    if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
        raise ConfigError("is the CSV file itself; write the config elsewhere", source=path)
    try:
        with open(path, "w" if force else "x", encoding="utf-8", newline="\n") as file:
            file.write(text)
    except FileExistsError:
        raise ConfigError("already exists; pass --force to overwrite it", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot write it: {exc.strerror}", source=path) from None
