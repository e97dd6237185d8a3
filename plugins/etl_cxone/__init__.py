"""NICE CXone: the ``cxone`` sink, a reusable OAuth 2.0 token provider and a local sandbox."""

from __future__ import annotations

import argparse

from etl_core import CommandLine, Sink, hookimpl
from etl_core.http import TokenProvider

from ._sink import CxoneOptions, CxoneSink

__all__ = ["CxoneOptions", "CxoneSink", "TokenProvider"]


@hookimpl
def register_sinks() -> list[type[Sink]]:
    return [CxoneSink]


@hookimpl
def register_commands(cli: CommandLine) -> None:
    """Add ``etl sandbox cxone [options]``: serve the sandbox until Ctrl-C or SIGTERM."""
    # Imported here: only the command line needs the server.
    from . import sandbox

    parser = cli.add_sandbox(
        "cxone",
        help="a CXone-like contacts API with OAuth tokens, rate limits and failures to order",
        description="Serve a local CXone-like API (OAuth 2.0 tokens, contacts) until Ctrl-C or SIGTERM; "
        "it prints its URL and credentials first.",
    )
    sandbox.add_arguments(parser)

    def serve(args: argparse.Namespace) -> int:
        try:
            settings = sandbox.settings_from_args(args)
        except ValueError as exc:
            parser.error(str(exc))
        sandbox.serve_forever(settings)
        return 0

    parser.set_defaults(handler=serve)
