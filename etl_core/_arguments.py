"""Small pieces shared by the commands' argument parsers."""

from __future__ import annotations

import argparse
import sys

#: Exit code of a usage or config error (nothing was read or sent).
EXIT_USAGE = 2


def positive_int(text: str) -> int:
    """An argument that must be a whole number of 1 or more (``-n``, ``--limit``).

    Raises:
        argparse.ArgumentTypeError: It is not.
    """
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return number


def show_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The handler of a command group called without a subcommand (``etl sandbox``, ``etl state``)."""
    parser.print_help(sys.stderr)
    return EXIT_USAGE
