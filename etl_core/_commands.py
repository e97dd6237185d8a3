"""The ``etl`` command line as plugins see it: where they add commands and options."""

from __future__ import annotations

import argparse
from typing import Any

from ._errors import PluginError


class CommandLine:
    """The ``etl`` command line, handed to the ``register_commands`` hook.

    Every method returns an :class:`argparse.ArgumentParser` to add arguments to. A new
    command runs the function given with ``parser.set_defaults(handler=function)``: it is
    called with the parsed arguments (an :class:`argparse.Namespace`) and returns the
    command's exit code. A :class:`ConfigError` or :class:`PluginError` it raises is
    printed as ``etl: error: ...`` with exit code 2.

    Args:
        commands: The subparsers of ``etl`` (its commands).
        sandboxes: The subparsers of ``etl sandbox``.
    """

    def __init__(self, commands: argparse._SubParsersAction[Any], sandboxes: argparse._SubParsersAction[Any]) -> None:
        self._commands = commands
        self._sandboxes = sandboxes

    def add_command(self, name: str, *, help: str, description: str | None = None) -> argparse.ArgumentParser:
        """Add the command ``etl NAME``.

        Args:
            name: The command's name.
            help: One line, shown by ``etl --help``.
            description: Shown by ``etl NAME --help`` (default: ``help``).

        Raises:
            PluginError: ``etl`` already has a command of that name.
        """
        return _add(self._commands, "command", name, help, description)

    def add_sandbox(self, name: str, *, help: str, description: str | None = None) -> argparse.ArgumentParser:
        """Add ``etl sandbox NAME``: a command that serves a local stand-in for a service.

        Args:
            name: The sandbox's name, usually that of the sink it stands in for.
            help: One line, shown by ``etl sandbox --help``.
            description: Shown by ``etl sandbox NAME --help`` (default: ``help``).

        Raises:
            PluginError: Another plugin added a sandbox of that name.
        """
        return _add(self._sandboxes, "sandbox", name, help, description)

    def command(self, name: str) -> argparse.ArgumentParser:
        """Return the parser of an existing command (e.g. ``run``), to add options to it.

        Raises:
            PluginError: ``etl`` has no command of that name (yet: plugins add theirs in
                registration order).
        """
        try:
            return self._commands.choices[name]
        except KeyError:
            raise PluginError(f"etl has no command {name!r}") from None


def _add(
    subparsers: argparse._SubParsersAction[Any], kind: str, name: str, help: str, description: str | None
) -> argparse.ArgumentParser:
    if name in subparsers.choices:
        raise PluginError(f"there is already a {kind} named {name!r}")
    return subparsers.add_parser(name, help=help, description=description or help)
