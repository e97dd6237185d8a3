"""The ``etl`` command: a thin front end over the public API.

Plugins add their own commands and options through the ``register_commands`` hook.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._arguments import EXIT_USAGE, show_usage
from ._commands import CommandLine
from ._errors import ConfigError, PluginError, RunLockedError
from ._guess_command import add_guess_command
from ._log_formats import LOG_FORMATS
from ._plugin_loading import add_plugin_commands, log_skipped_plugins
from ._preview import add_preview_command
from ._scaffold import add_init_command
from ._state_command import add_state_command
from ._version import __version__

if TYPE_CHECKING:
    from .registry import PluginManager

#: Another run is using the output directory (EX_CANTCREAT of sysexits.h: the run's
#: files cannot be made).
EXIT_LOCKED = 73


def main(argv: Sequence[str] | None = None, *, extra_plugins: tuple[object, ...] = ()) -> int:
    """Run the ``etl`` command line and return its exit code.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        extra_plugins: Plugin objects to register besides the built-in and installed ones.
    """
    from .registry import make_plugin_manager

    try:
        pm = make_plugin_manager(extra_plugins=extra_plugins, report=_warning)
        parser = _parser(pm)
    except PluginError as exc:
        _error(exc)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    # What `run.processes` starts each shard process with (plus --shard).
    args.command_line = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        pm.hook.command_started(command=args.command, options=args)
        if not hasattr(args, "handler"):
            raise PluginError(f"the command {args.command!r} has no handler: its plugin must set_defaults(handler=...)")
        return int(args.handler(args))
    except (ConfigError, PluginError) as exc:
        _error(exc)
        return EXIT_USAGE
    except RunLockedError as exc:
        _error(exc)
        return EXIT_LOCKED
    except BaseExceptionGroup as group:
        # Raised inside a task group (e.g. while a sandbox serves).
        user_errors, others = group.split((ConfigError, PluginError, RunLockedError))
        if user_errors is None or others is not None:
            raise
        first = _first_leaf(user_errors)
        _error(first)
        return EXIT_LOCKED if isinstance(first, RunLockedError) else EXIT_USAGE
    except KeyboardInterrupt:
        # Ctrl-C outside a run (a run handles its own signals).
        return 130


def _error(message: object) -> None:
    """Say what went wrong on stderr, with every registered secret masked."""
    from .logging import redact

    print(f"etl: error: {redact(str(message))}", file=sys.stderr)


def _warning(message: str) -> None:
    """Report a problem that does not stop the command (a plugin skipped) on stderr, secrets masked."""
    from .logging import redact

    print(f"etl: warning: {redact(message)}", file=sys.stderr)


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _parser(pm: PluginManager) -> argparse.ArgumentParser:
    """The ``etl`` parser: the core's commands, then those the plugins add."""
    parser = argparse.ArgumentParser(prog="etl", description="Stream records from a source, through transforms, into a sink.")
    parser.add_argument("--version", action="version", version=f"etl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline", description="Run a pipeline described by a YAML config file.")
    run.add_argument("config", help="pipeline config file (YAML)")
    run.add_argument("--dry-run", action="store_true", help="read, transform and validate; describe the requests; send nothing")
    run.add_argument("--sandbox", action="store_true", help="send to the sink's bundled local sandbox instead of the real service")
    run.add_argument(
        "--workers", type=_workers, metavar="N|auto", help="concurrent sends, or auto (overrides run.workers)"
    )
    run.add_argument(
        "--shard", type=_shard, metavar="K/N",
        help="send only the records of shard K of N (from 0), by a hash of their key (default: ETL_SHARD)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    run.add_argument("--fresh", action="store_true", help="ignore the checkpoints of earlier runs and send every record")
    run.add_argument(
        "--retry-rejected", action="store_true", help="also send again records an earlier run saw refused for good (400, 404)"
    )
    _add_logging_args(run)
    run.set_defaults(handler=functools.partial(_cmd_run, pm=pm))

    validate = sub.add_parser("validate", help="check a config without reading or sending anything")
    validate.add_argument("config", help="pipeline config file (YAML)")
    validate.add_argument(
        "--check-auth", action="store_true", help="also check the sink's credentials (e.g. one token request); sends no record"
    )
    _add_logging_args(validate)
    validate.set_defaults(handler=functools.partial(_cmd_validate, pm=pm))

    add_preview_command(sub, pm)
    add_guess_command(sub, pm)

    plugins = sub.add_parser("plugins", help="list installed sources, transforms and sinks")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.set_defaults(handler=functools.partial(_cmd_plugins, pm=pm))

    schema = sub.add_parser("schema", help="print the JSON Schema of the config file (for editors)")
    schema.set_defaults(handler=functools.partial(_cmd_schema, pm=pm))

    add_state_command(sub)
    add_init_command(sub, pm)

    sandbox = sub.add_parser(
        "sandbox",
        help="serve a local stand-in for a sink's service, for demos and tests",
        description="Serve a local stand-in for a sink's service until Ctrl-C. "
        "`etl sandbox NAME --help` shows the options of one.",
    )
    sandbox.set_defaults(handler=functools.partial(show_usage, sandbox))
    sandboxes = sandbox.add_subparsers(dest="sandbox_name", metavar="NAME", title="installed sandboxes")

    add_plugin_commands(pm, CommandLine(sub, sandboxes), (sub, sandboxes))
    return parser


def _add_logging_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=LOG_FORMATS, help="log format (default: config, else auto)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="lowest log level written")


def _workers(text: str) -> int | str:
    """``--workers``: what ``run.workers`` accepts, validated by its own field."""
    from .config import RunSettings

    try:  # pydantic's ValidationError is a ValueError
        return RunSettings.model_validate({"workers": text if text == "auto" else int(text)}).workers
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto or a whole number from 1 to 4096") from None


def _shard(text: str) -> Any:
    """``--shard``: ``K/N``, shard K (from 0) of N."""
    from ._shard import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load(args: argparse.Namespace, pm: PluginManager, sink_overrides: dict[str, Any] | None = None) -> Any:
    from .config import load_config
    from .logging import configure_logging, register_secret
    from .registry import Registry

    config = load_config(args.config, Registry(pm), sink_overrides=sink_overrides)
    logging_settings = config.model.logging
    configure_logging(
        level=args.log_level or logging_settings.level,
        fmt=args.log_format or logging_settings.format,
        mask_pii=logging_settings.mask_pii,
        pii_fields=tuple(logging_settings.pii_fields),
    )
    for secret in config.secrets():
        register_secret(secret)
    log_skipped_plugins(pm)
    return config


def _cmd_run(args: argparse.Namespace, pm: PluginManager) -> int:
    import trio

    from ._processes import PROGRESS_FD_VARIABLE, processes_of, run_processes, stop_with_parent
    from ._shard import resolve_shard

    args.shard = resolve_shard(args.shard, os.environ)
    if args.shard is not None:
        stop_with_parent(os.environ)
    if args.shard is not None and (progress_fd := os.environ.get(PROGRESS_FD_VARIABLE)) is not None:
        from ._progress_pipe import ProgressPipe

        pm.register(ProgressPipe(int(progress_fd)))  # a shard of run.processes: its parent draws the bar
    if not args.sandbox:
        config = _load(args, pm)  # a config error is reported once, before any shard process starts
        if args.shard is None and (count := processes_of(config.model)) > 1:
            return run_processes(args, config.model, count, args.command_line)
        return trio.run(lambda: _run(config, pm, args))
    if args.shard is None:
        from ._state_command import _core_settings

        # The sandbox replaces the sink's options: each shard process starts its own.
        model, _ = _core_settings(args.config)
        if (count := processes_of(model)) > 1:
            return run_processes(args, model, count, args.command_line)

    async def in_sandbox() -> int:
        async with _sandbox_sink_class(args.config, pm).open_sandbox() as overrides:
            config = _load(args, pm, sink_overrides=overrides)
            # Each sandbox starts empty: its runs keep their files (and checkpoints) apart
            # from the real service's, and never resume.
            sandbox_dir = os.path.join(config.model.output.dir, "sandbox")
            return await _run(config, pm, args, output_dir=sandbox_dir, fresh=True)

    return trio.run(in_sandbox)


async def _run(config: Any, pm: PluginManager, args: argparse.Namespace, *, output_dir: str | None = None, fresh: bool = False) -> int:
    from .pipeline import RunOptions, run_pipeline

    options = RunOptions(
        dry_run=args.dry_run,
        workers=args.workers,
        fresh=args.fresh or fresh,
        retry_rejected=args.retry_rejected,
        show_progress=not args.no_progress,
        output_dir=output_dir,
        shard=args.shard,
    )
    result = await run_pipeline(config, pm, options)
    # Logs may be going to a file or a log shipper: say it on stderr too.
    if result.report["aborted"]:
        _error(f"run stopped: {result.report['aborted']}")
    if result.report_error:
        _error(result.report_error)
    if options.show_progress:  # where the progress bar was drawn: a summary for a person
        from ._summary import run_summary
        from .progress import terminal_console

        if (console := terminal_console()) is not None:
            console.print(run_summary(result.report, resumes=not args.sandbox))
    return result.exit_code


def _sandbox_sink_class(path: str, pm: PluginManager) -> Any:
    """The sink class named by a config file, read before validation (for --sandbox)."""
    from .config import read_config
    from .registry import Registry

    data, lines = read_config(path)
    sink_type = data.get("sink", {}).get("type") if isinstance(data, dict) and isinstance(data.get("sink"), dict) else None
    if not isinstance(sink_type, str):
        raise ConfigError("sink.type is missing", path="sink.type", line=lines.get(("sink",)), source=path)
    try:
        return Registry(pm).get("sink", sink_type)
    except PluginError as exc:
        raise ConfigError(str(exc), path="sink.type", line=lines.get(("sink", "type")), source=path) from None


def _cmd_validate(args: argparse.Namespace, pm: PluginManager) -> int:
    from ._input_check import check_before_sending

    config = _load(args, pm)
    transforms = [cls(options) for cls, options in config.transforms]
    check_before_sending(config, config.source[0](config.source[1]), transforms, config.sink[0](config.sink[1]))
    model = config.model
    print(
        f"{args.config}: valid. pipeline {model.pipeline!r}: source {model.source.type!r}, "
        f"{len(model.transforms)} transform(s), sink {model.sink.type!r}, {model.run.workers} workers"
    )
    if args.check_auth:
        import trio

        from ._errors import EtlError

        sink_cls, options = config.sink
        try:
            checked = trio.run(sink_cls(options).check_auth)
        except EtlError as exc:
            _error(f"credentials check failed: {exc}")
            return EXIT_USAGE
        print(f"credentials: {checked}" if checked else f"credentials: sink {model.sink.type!r} has none to check")
    return 0


def _cmd_plugins(args: argparse.Namespace, pm: PluginManager) -> int:
    from ._plugin_listing import plugin_rows, plugin_table

    rows = plugin_rows(pm)
    print(json.dumps(rows, indent=2) if args.json else plugin_table(rows))
    return 0


def _cmd_schema(args: argparse.Namespace, pm: PluginManager) -> int:
    from .registry import Registry
    from .schema import config_schema

    print(json.dumps(config_schema(Registry(pm)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
