"""The sandbox's command line, generated from :class:`SandboxSettings`."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ._server import serve_forever
from ._settings import Flag, SandboxSettings, error_message

__all__ = ["add_arguments", "main", "settings_from_args"]

_PLAIN = Flag()


def _flags() -> Iterator[tuple[str, FieldInfo, Flag]]:
    """The settings that have a command-line option, with their field and flag."""
    for name, field in SandboxSettings.model_fields.items():
        flag = next((item for item in field.metadata if isinstance(item, Flag)), _PLAIN)
        if not flag.omit:
            yield name, field, flag


def _converter(name: str, parse: Callable[[str], Any] | None, choices: tuple[Any, ...]) -> Callable[[str], Any]:
    """An argparse type that validates the option's value as the setting ``name``.

    Bad values become usage errors (exit code 2) with the model's own message.
    """
    by_text = {str(choice): choice for choice in choices}  # e.g. "503" -> 503

    def convert(text: str) -> Any:
        try:
            value = parse(text) if parse is not None else by_text.get(text, text)
            return getattr(SandboxSettings.model_validate({name: value}), name)
        except pydantic.ValidationError as exc:
            message = error_message(exc.errors()[0])
        except ValueError as exc:
            message = str(exc)
        raise argparse.ArgumentTypeError(f"{message[:1].lower()}{message[1:]}: {text!r}")

    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox options to a command-line parser: one per setting, e.g. ``--rate-limit``.

    Args:
        parser: The parser (e.g. of ``etl sandbox cxone``).
    """
    for name, field, flag in _flags():
        default = flag.default if flag.default is not PydanticUndefined else field.default
        # argparse formats help with %: a literal one is doubled.
        help_text = (field.description or "").replace("``", "").replace("%", "%%").rstrip(".")
        option = "--" + name.replace("_", "-")
        if field.annotation is bool:
            # A switch that is off by default has an option that turns it on; one that is
            # on, a --no-... option too.
            if default is True:
                parser.add_argument(option, action=argparse.BooleanOptionalAction, default=True, help=help_text)
            else:
                parser.add_argument(option, action="store_true", help=help_text)
            continue
        if default is not None and default != ():
            help_text += " (default: %(default)s)"
        is_choice = typing.get_origin(field.annotation) is typing.Literal
        choices = typing.get_args(field.annotation) if is_choice else ()
        parser.add_argument(
            option,
            type=_converter(name, flag.parse, choices),
            default=default,
            choices=choices or None,
            metavar=flag.metavar,
            help=help_text,
        )


def settings_from_args(ns: argparse.Namespace) -> SandboxSettings:
    """Build settings from options added by :func:`add_arguments`.

    Args:
        ns: Parsed arguments; settings without an attribute keep their default.

    Returns:
        The settings.

    Raises:
        ValueError: A value is out of range.
    """
    values = vars(ns)
    return SandboxSettings(**{name: values[name] for name, _, _ in _flags() if name in values})


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m etl_cxone.sandbox``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m etl_cxone.sandbox", description="Run the local CXone sandbox API."
    )
    add_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        settings = settings_from_args(ns)
    except ValueError as exc:
        parser.error(str(exc))
    serve_forever(settings)
    return 0
