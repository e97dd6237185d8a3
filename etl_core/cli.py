"""The ``etl`` command: a thin front end over the public API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._errors import ConfigError, PluginError
from ._version import __version__

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``etl`` command line and return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except (ConfigError, PluginError) as exc:
        print(f"etl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BaseExceptionGroup as group:
        # Raised inside a task group (e.g. while a sandbox serves).
        user_errors, others = group.split((ConfigError, PluginError))
        if user_errors is None or others is not None:
            raise
        print(f"etl: error: {_first_leaf(user_errors)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Ctrl-C outside a run (a run handles its own signals).
        return 130


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etl", description="Stream records from a source, through transforms, into a sink.")
    parser.add_argument("--version", action="version", version=f"etl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline", description="Run a pipeline described by a YAML config file.")
    run.add_argument("config", help="pipeline config file (YAML)")
    run.add_argument("--dry-run", action="store_true", help="read, transform and validate; describe the requests; send nothing")
    run.add_argument("--sandbox", action="store_true", help="send to the sink's bundled local sandbox instead of the real service")
    run.add_argument("--workers", type=_positive_int, help="number of concurrent sends (overrides run.workers)")
    run.add_argument(
        "--metrics-port", type=_port, metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT during the run (0 picks a free port; see ETL_METRICS_ADDR)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    run.add_argument("--fresh", action="store_true", help="ignore the checkpoints of earlier runs and send every record")
    run.add_argument(
        "--retry-rejected", action="store_true", help="also send again records an earlier run saw refused for good (400, 404)"
    )
    _add_logging_args(run)
    run.set_defaults(handler=_cmd_run)

    validate = sub.add_parser("validate", help="check a config without reading or sending anything")
    validate.add_argument("config", help="pipeline config file (YAML)")
    validate.add_argument(
        "--check-auth", action="store_true", help="also check the sink's credentials (e.g. one token request); sends no record"
    )
    _add_logging_args(validate)
    validate.set_defaults(handler=_cmd_validate)

    plugins = sub.add_parser("plugins", help="list installed sources, transforms and sinks")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.set_defaults(handler=_cmd_plugins)

    schema = sub.add_parser("schema", help="print the JSON Schema of the config file (for editors)")
    schema.set_defaults(handler=_cmd_schema)

    sandbox = sub.add_parser(
        "sandbox", help="serve a sink's local sandbox (e.g. `etl sandbox cxone --help`)", add_help=False
    )
    sandbox.add_argument("name", choices=sorted(_SANDBOXES), help="which sandbox")
    sandbox.add_argument("options", nargs=argparse.REMAINDER, help="the sandbox's own options (see --help after the name)")
    sandbox.set_defaults(handler=_cmd_sandbox)
    return parser


#: Sandboxes servable with `etl sandbox NAME`: name -> module with add_arguments/settings_from_args/serve_forever.
_SANDBOXES = {"cxone": "etl_cxone.sandbox"}


def _cmd_sandbox(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(_SANDBOXES[args.name])
    parser = argparse.ArgumentParser(prog=f"etl sandbox {args.name}", description=(module.__doc__ or "").strip().splitlines()[0])
    module.add_arguments(parser)
    module.serve_forever(module.settings_from_args(parser.parse_args(args.options)))
    return 0


def _add_logging_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("auto", "json", "console"), help="log format (default: config, else auto)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="lowest log level written")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _load(args: argparse.Namespace, sink_overrides: dict[str, Any] | None = None) -> tuple[Any, Any]:
    from .config import load_config
    from .logging import configure_logging, register_secret
    from .plugins import Registry, make_plugin_manager

    pm = make_plugin_manager()
    config = load_config(args.config, Registry(pm), sink_overrides=sink_overrides)
    logging_settings = config.model.logging
    configure_logging(
        level=args.log_level or logging_settings.level,
        fmt=args.log_format or logging_settings.format,
        mask_pii=logging_settings.mask_pii,
        pii_fields=tuple(logging_settings.pii_fields),
    )
    for _, options in (config.source, *config.transforms, config.sink):
        for value in options.model_dump().values():
            if hasattr(value, "get_secret_value"):
                register_secret(value.get_secret_value())
    return config, pm


def _cmd_run(args: argparse.Namespace) -> int:
    import trio

    if args.metrics_port is not None:
        # Read by the etl_metrics plugin when the run starts.
        os.environ["ETL_METRICS_PORT"] = str(args.metrics_port)

    if not args.sandbox:
        config, pm = _load(args)
        return trio.run(lambda: _run(config, pm, args))

    async def in_sandbox() -> int:
        async with _sandbox_sink_class(args.config).open_sandbox() as overrides:
            config, pm = _load(args, sink_overrides=overrides)
            # Each sandbox starts empty: its runs keep their files (and checkpoints) apart
            # from the real service's, and never resume.
            sandbox_dir = os.path.join(config.model.output.dir, "sandbox")
            return await _run(config, pm, args, output_dir=sandbox_dir, fresh=True)

    return trio.run(in_sandbox)


async def _run(config: Any, pm: Any, args: argparse.Namespace, *, output_dir: str | None = None, fresh: bool = False) -> int:
    from .pipeline import run_pipeline

    result = await run_pipeline(
        config,
        pm,
        dry_run=args.dry_run,
        workers=args.workers,
        fresh=args.fresh or fresh,
        retry_rejected=args.retry_rejected,
        show_progress=not args.no_progress,
        output_dir=output_dir,
    )
    if result.report["aborted"]:
        # Logs may be going to a file or a log shipper: say why on stderr too.
        print(f"etl: error: run stopped: {result.report['aborted']}", file=sys.stderr)
    return result.exit_code


def _sandbox_sink_class(path: str) -> Any:
    """The sink class named by a config file, read before validation (for --sandbox)."""
    from .config import read_config
    from .plugins import Registry, make_plugin_manager

    data, lines = read_config(path)
    sink_type = data.get("sink", {}).get("type") if isinstance(data, dict) and isinstance(data.get("sink"), dict) else None
    if not isinstance(sink_type, str):
        raise ConfigError("sink.type is missing", path="sink.type", line=lines.get(("sink",)), source=path)
    try:
        return Registry(make_plugin_manager()).get("sink", sink_type)
    except PluginError as exc:
        raise ConfigError(str(exc), path="sink.type", line=lines.get(("sink", "type")), source=path) from None


def _cmd_validate(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    for cls, options in (config.source, *config.transforms, config.sink):
        cls(options).check()
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
            print(f"etl: error: credentials check failed: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"credentials: {checked}" if checked else f"credentials: sink {model.sink.type!r} has none to check")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import Registry, make_plugin_manager

    infos = Registry(make_plugin_manager()).infos()
    rows = [
        {"kind": i.kind, "name": i.name, "package": i.package, "version": i.version, "plugin": i.provider,
         "description": (i.cls.__doc__ or "").strip().splitlines()[0] if i.cls.__doc__ else ""}
        for i in infos
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    widths = {key: max(len(key), *(len(str(row[key])) for row in rows)) for key in ("kind", "name", "package", "version")}
    print("  ".join(key.upper().ljust(widths[key]) for key in widths) + "  DESCRIPTION")
    for row in rows:
        print("  ".join(str(row[key]).ljust(widths[key]) for key in widths) + "  " + row["description"])
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from .plugins import Registry, make_plugin_manager
    from .schema import config_schema

    print(json.dumps(config_schema(Registry(make_plugin_manager())), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
