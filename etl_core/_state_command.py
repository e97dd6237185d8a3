"""``etl state show|list|clear``: what earlier runs of a pipeline remember, and forgetting it.

The state file (``output.dir``/``state.path``) holds each key's checkpoint (its outcome in
the last run that sent it) and the quota measured at each destination. ``show`` and
``list`` only read it; ``clear`` takes the output directory's lease first, as a run
does, so it never changes the state under a run.

Only the config's core settings are read (``pipeline``, ``key``, ``output``, ``state``...):
the variables (``${VAR}``) of the source, the transforms and the sink, such as the
credentials, need not be set. An unset variable elsewhere is an error that names it, as
for ``etl validate``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import itertools
import json
import os
import sys
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._arguments import positive_int, show_usage
from ._errors import ConfigError, RunLockedError

if TYPE_CHECKING:
    from ._state_store import StateBackend, StateReader
    from ._state_view import StateSummary, StoredQuota, StoredRecord
    from .config import PipelineModel

#: The sections only plugins read: their variables (credentials...) need not be set.
_PLUGIN_SECTIONS = frozenset({"source", "transforms", "sink"})
#: The most of a report file read (a report is a few kilobytes).
_REPORT_MAX_BYTES = 1 << 20
#: Rows read before the widths of the ``list`` table are fixed (the rest stream).
_WIDTH_SAMPLE = 1000
#: The outcomes of ``_state_view.CATEGORIES``, as ``show`` names them and what a rerun does.
_LABELS = {"delivered": "delivered", "refused": "refused for good", "retryable": "retryable"}
_RERUN = {
    "delivered": "the next run skips them while unchanged",
    "refused": "the next run skips them while unchanged (etl run --retry-rejected sends them)",
    "retryable": "the next run sends them again",
}
#: Where ``etl run --sandbox`` keeps its files, in the output directory.
_SANDBOX_DIR = "sandbox"
_SANDBOX_HELP = f"the state of the runs with --sandbox (in the output directory's {_SANDBOX_DIR}/)"


def add_state_command(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``etl state`` and its actions ``show``, ``list`` and ``clear`` to the ``etl`` parser."""
    state = commands.add_parser(
        "state",
        help="show, list or clear what earlier runs remember (checkpoints, quota)",
        description="Show, list or clear what earlier runs of a pipeline remember: each key's checkpoint "
        "and the quota measured at each destination. `etl state ACTION --help` shows the options of one.",
    )
    state.set_defaults(handler=functools.partial(show_usage, state))
    actions = state.add_subparsers(dest="state_action", metavar="ACTION")

    show = actions.add_parser(
        "show", help="count the checkpoints by outcome; the last run; the remembered quota",
        description="Count the pipeline's checkpoints by outcome and show its last run and the remembered "
        "quota. Reads the state file without changing it.",
    )
    show.add_argument("config", help="pipeline config file (YAML)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.add_argument("--sandbox", action="store_true", help=_SANDBOX_HELP)
    show.set_defaults(handler=_show)

    listing = actions.add_parser(
        "list", help="list the checkpoints: key, outcome, status, attempts, reason",
        description="List the pipeline's checkpoints in key order, as they are read (any number of keys). "
        "Reads the state file without changing it.",
    )
    listing.add_argument("config", help="pipeline config file (YAML)")
    listing.add_argument("--outcome", choices=tuple(_LABELS), help="only the checkpoints with this outcome")
    listing.add_argument("--limit", type=positive_int, metavar="N", help="at most N checkpoints")
    listing.add_argument("--json", action="store_true", help="print one JSON object per line instead of a table")
    listing.add_argument("--sandbox", action="store_true", help=_SANDBOX_HELP)
    listing.set_defaults(handler=_list)

    clear = actions.add_parser(
        "clear", help="forget checkpoints (the next run sends those records again) or the quota",
        description="Forget the checkpoints of the given keys, or of every key (--all), so that the next run "
        "sends those records again; or the remembered quota (--quota), so that the next run measures it "
        "again. Refused (exit code 73) while a run uses the output directory.",
    )
    clear.add_argument("config", help="pipeline config file (YAML)")
    clear.add_argument("keys", nargs="*", metavar="KEY", help="a key whose checkpoint to forget (after -- if it starts with -)")
    clear.add_argument("--all", action="store_true", help="forget the checkpoint of every key of the pipeline")
    clear.add_argument("--quota", action="store_true", help="forget the quota remembered for every destination")
    clear.set_defaults(handler=_clear)


# -- the pipeline's state file ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Target:
    """Where a pipeline's runs keep their state and their report."""

    pipeline: str
    output_dir: str  # absolute, as a run resolves it
    state_path: str  # absolute, or the database's URL without its password
    shown_path: str  # as the config gives it, for messages
    report_path: str  # absolute
    shown_report: str
    state_url: str | None = None  # the database's URL, with its password

    def exists(self) -> bool:
        """Whether a run may have written the state (a database: opening it tells)."""
        from ._state_store import state_exists

        return state_exists(self.state_url, self.state_path)

    def view(self) -> StateReader:
        """Open the state read-only (it exists)."""
        from ._state_store import open_state_reader

        return open_state_reader(self.state_url, self.state_path, self.pipeline)

    def open(self, run_id: str) -> StateBackend:
        """Open the state for writing (it exists)."""
        from ._state_store import open_state

        return open_state(self.state_url, self.state_path, self.pipeline, run_id)

    def no_state_yet(self) -> str:
        return f"no state yet: no run has written {self.shown_path}"


def _target(config_path: str, *, sandbox: bool = False) -> _Target:
    """Read the config's core settings and say where its pipeline's state is.

    Args:
        config_path: The config file.
        sandbox: Where the runs with ``--sandbox`` keep it instead.

    Raises:
        ConfigError: The config is invalid, or its runs keep no state (no ``key``, or
            ``state.enabled`` is false).
    """
    model, lines = _core_settings(config_path)
    if model.key is None:
        raise ConfigError("is not set, so runs of this pipeline keep no state (checkpoints are per key)", path="key", source=config_path)
    if not model.state.enabled:
        raise ConfigError(
            "is false: runs of this pipeline keep no state",
            path="state.enabled", line=lines.get(("state", "enabled")), source=config_path,
        )
    shown_dir = os.path.join(model.output.dir, _SANDBOX_DIR) if sandbox else model.output.dir
    output_dir = os.path.abspath(shown_dir)
    state_path = os.path.join(output_dir, model.state.path)
    shown_path = os.path.normpath(os.path.join(shown_dir, model.state.path))
    # Sandbox runs keep their state in the sandbox's directory, never in the database.
    state_url = model.state.url.get_secret_value() if model.state.url is not None and not sandbox else None
    if state_url is not None:
        from ._state_store import shown_url

        state_path = shown_path = shown_url(state_url)
    return _Target(
        pipeline=model.pipeline,
        output_dir=output_dir,
        state_path=state_path,
        shown_path=shown_path,
        report_path=os.path.join(output_dir, model.output.report),
        shown_report=os.path.normpath(os.path.join(shown_dir, model.output.report)),
        state_url=state_url,
    )


def _core_settings(config_path: str) -> tuple[PipelineModel, dict[Any, int]]:
    """The config's core settings, validated; the plugins' sections are left as written."""
    from .config import PipelineModel, _validate, interpolate, read_config

    data, lines = read_config(config_path)
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping of keys (pipeline, source, sink, ...)", line=1, source=config_path)
    core = {
        name: value if name in _PLUGIN_SECTIONS else interpolate(value, os.environ, lines, (name,), config_path)
        for name, value in data.items()
    }
    model: PipelineModel = _validate(PipelineModel, core, (), lines, config_path)
    return model, lines


# -- show ------------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    from .state import StateError

    target = _target(args.config, sandbox=args.sandbox)
    last_run = _last_run(target)
    summary: StateSummary | None = None
    quotas: list[StoredQuota] = []
    others: list[str] = []
    if target.exists():
        try:
            with target.view() as view:
                summary = view.summary()
                quotas = view.quotas()
                others = view.other_pipelines() if summary.total == 0 else []
        except StateError as exc:
            raise ConfigError(str(exc), path="state.path") from None
    from ._shard_reports import describe_shards, shard_summary

    shards = shard_summary(target.report_path, target.pipeline)
    if args.json:
        _print_json_summary(target, summary, last_run, quotas, shards)
    elif summary is None:
        print(target.no_state_yet())
    else:
        _print_summary(target, summary, last_run, quotas, others)
    if shards is not None and not args.json:
        print("\n" + "\n".join(describe_shards(shards)))
    return 0


def _last_run(target: _Target) -> dict[str, Any] | None:
    """The last run's report (the essentials), if it is there and of this pipeline."""
    from ._regular_file import open_regular_file

    try:
        with open_regular_file(target.report_path) as file:
            report = json.loads(file.read(_REPORT_MAX_BYTES))
    except (OSError, ValueError):  # none yet, or unreadable: the state is shown all the same
        return None
    if not isinstance(report, dict) or report.get("pipeline") != target.pipeline:
        return None
    keys = ("run_id", "dry_run", "started_at", "finished_at", "duration_s", "exit_code", "interrupted_by", "aborted", "records")
    return {**{key: report.get(key) for key in keys}, "report": target.report_path}


def _print_json_summary(
    target: _Target, summary: StateSummary | None, last_run: dict[str, Any] | None, quotas: list[StoredQuota],
    shards: dict[str, Any] | None = None,
) -> None:
    records: dict[str, int] = {"total": 0, **dict.fromkeys(_LABELS, 0)}
    last_checkpoint = None
    if summary is not None:
        records = {"total": summary.total, **summary.counts}
        if summary.last_change is not None:
            last_checkpoint = {"at": _time(summary.last_change), "run_id": summary.last_run_id}
    document = {
        "pipeline": target.pipeline,
        "state_file": target.state_path,
        "exists": summary is not None,
        "records": records,
        "last_checkpoint": last_checkpoint,
        "last_run": last_run,
        "quotas": [
            {"destination": q.destination, "rate_per_s": q.rate, "burst": q.burst, "run_id": q.run_id, "updated_at": _time(q.updated_at)}
            for q in quotas
        ],
    }
    document["shards"] = shards  # each shard's last run and their total (None: no shard ran)
    print(json.dumps(document, indent=2))


def _print_summary(
    target: _Target, summary: StateSummary, last_run: dict[str, Any] | None, quotas: list[StoredQuota], others: list[str]
) -> None:
    out = [f"pipeline {target.pipeline!r}: {target.shown_path}", ""]
    if summary.total == 0:
        elsewhere = f" (the file has those of pipeline {', '.join(map(repr, others))})" if others else ""
        out.append(f"checkpoints: none{elsewhere}")
    else:
        out.append(f"checkpoints: {summary.total:,}")
        labels = {name: _LABELS.get(name, _printable(name)) for name in summary.counts}
        label_width, count_width = max(map(len, labels.values())), len(f"{summary.total:,}")
        for name, count in summary.counts.items():
            out.append(f"  {labels[name]:<{label_width}}  {count:>{count_width},}  {_RERUN.get(name, '')}".rstrip())
        if summary.last_change is not None:
            out.append(f"  last checkpoint {_time(summary.last_change)}, run {summary.last_run_id}")
    out += ["", _describe_run(last_run, summary, target)]
    out += ["", "remembered quota:" if quotas else "remembered quota: none"]
    out += [
        f"  {q.rate:.2f}/s, burst {q.burst:.0f}, measured {_time(q.updated_at)}: {_printable(q.destination)}" for q in quotas
    ]
    print("\n".join(out))


def _describe_run(last_run: dict[str, Any] | None, summary: StateSummary, target: _Target) -> str:
    if last_run is None:
        return f"last run: no report in {target.shown_report}"
    records = last_run["records"] if isinstance(last_run["records"], dict) else {}
    text = (
        f"last run: {last_run['run_id']}, started {last_run['started_at']}, {last_run['duration_s']} s, "
        f"exit code {last_run['exit_code']} ({target.shown_report})\n"
        f"  records: {', '.join(f'{name} {count}' for name, count in records.items())}"
    )
    finished = _parse_time(last_run.get("finished_at"))
    if summary.last_change is not None and finished is not None and summary.last_change > finished:
        text += f"\n  run {summary.last_run_id} wrote checkpoints after it, and no report: it was killed, or is running"
    return text


# -- list ------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from .state import StateError

    target = _target(args.config, sandbox=args.sandbox)
    # Messages that are not data go to stderr with --json: stdout stays JSON Lines.
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    if not target.exists():
        say(target.no_state_yet())
        return 0
    try:
        with target.view() as view:
            records = view.records(outcome=args.outcome, limit=args.limit)
            written = _write_json_lines(records) if args.json else _write_table(records)
            sys.stdout.flush()  # here, where a closed pipe is handled, not at exit
    except StateError as exc:
        raise ConfigError(str(exc), path="state.path") from None
    except BrokenPipeError:
        # The reader stopped early (`| head`): not an error; nothing more may be written.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not written:
        say(f"no checkpoints of pipeline {target.pipeline!r}{f' with outcome {args.outcome}' if args.outcome else ''}")
    return 0


def _write_json_lines(records: Iterable[StoredRecord]) -> int:
    written = 0
    for chunk in _chunks(records):
        lines = [
            json.dumps({
                "key": r.key, "outcome": r.outcome, "status": r.status, "attempts": r.attempts, "reason": r.reason,
                "line": r.line, "run_id": r.run_id, "updated_at": _time(r.updated_at),
            })
            for r in chunk
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        written += len(lines)
    return written


def _write_table(records: Iterable[StoredRecord]) -> int:
    """A table whose widths fit the first rows; later rows stream under them."""
    header = ("KEY", "OUTCOME", "STATUS", "ATTEMPTS", "LINE", "CHANGED", "REASON")
    iterator = iter(records)
    first = [_cells(r) for r in itertools.islice(iterator, _WIDTH_SAMPLE)]
    if not first:
        return 0
    widths = [max(len(header[i]), *(len(cells[i]) for cells in first)) for i in range(len(header) - 1)]

    def line(cells: tuple[str, ...]) -> str:
        return ("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False)) + "  " + cells[-1]).rstrip()

    sys.stdout.write("\n".join([line(header), *map(line, first)]) + "\n")
    written = len(first)
    for chunk in _chunks(iterator):
        sys.stdout.write("\n".join(line(_cells(r)) for r in chunk) + "\n")
        written += len(chunk)
    return written


def _cells(r: StoredRecord) -> tuple[str, ...]:
    return (
        _printable(r.key), r.outcome, "-" if r.status is None else str(r.status), str(r.attempts),
        "-" if r.line is None else str(r.line), _time(r.updated_at), _printable(r.reason or ""),
    )


def _chunks(records: Iterable[StoredRecord]) -> Iterable[list[StoredRecord]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, _WIDTH_SAMPLE)):
        yield chunk


# -- clear -----------------------------------------------------------------------------


def _clear(args: argparse.Namespace) -> int:
    from ._lease import take_lease
    from .state import StateError

    if not (args.keys or args.all or args.quota):
        raise ConfigError("say what to forget: one or more keys, --all (every checkpoint) or --quota (the remembered quota)")
    if args.keys and args.all:
        raise ConfigError("give keys or --all, not both")
    target = _target(args.config)
    if target.state_url is None and not os.path.isdir(target.output_dir):
        print(f"nothing to forget: {target.no_state_yet()}")
        return 0
    run_id = uuid.uuid4().hex
    try:  # as a run does: the state never changes under a run
        lease = take_lease(target.output_dir, pipeline=target.pipeline, run_id=run_id) if os.path.isdir(target.output_dir) else None
    except RunLockedError as exc:
        raise RunLockedError(f"nothing was forgotten: {exc}") from None
    try:
        if not target.exists():
            print(f"nothing to forget: {target.no_state_yet()}")
            return 0
        store = target.open(run_id)
        try:
            store_lease = store.take_lease()  # a database's runs may use other output directories
        except RunLockedError as exc:
            store.close()
            raise RunLockedError(f"nothing was forgotten: {exc}") from None
        try:
            report = _forget(store, args, target)
        finally:
            store_lease.release()
            store.close()
    except StateError as exc:
        raise ConfigError(str(exc), path="state.url" if target.state_url else "state.path") from None
    finally:
        if lease is not None:
            lease.release()
    print("\n".join(report))
    return 0


def _forget(store: StateBackend, args: argparse.Namespace, target: _Target) -> list[str]:
    """Forget what ``args`` name; return what to tell the user (one line each)."""
    where = f"pipeline {target.pipeline!r} ({target.shown_path})"
    report: list[str] = []
    if args.all:
        count = store.forget()
        report.append(f"forgot all {count:,} checkpoints of {where}: the next run sends every record again")
    elif args.keys:
        keys = list(dict.fromkeys(args.keys))
        forgotten = store.forget_keys(keys)
        report.append(f"forgot {len(forgotten):,} of {len(keys):,} checkpoints of {where}: the next run sends those records again")
        done = set(forgotten)
        report += [f"  forgot {_printable(key)}" for key in forgotten]
        report += [f"  no checkpoint of {_printable(key)}: nothing to forget" for key in keys if key not in done]
    if args.quota:
        quotas = store.forget_quotas()
        report.append(
            f"forgot the quota remembered for {len(quotas)} destination(s): the next run measures it again"
            if quotas else f"no quota remembered in {target.shown_path}: nothing to forget"
        )
        report += [f"  {rate:.2f}/s, burst {burst:.0f}: {_printable(destination)}" for destination, rate, burst in quotas]
    return report


# -- formatting ------------------------------------------------------------------------


def _time(epoch: float) -> str:
    """ISO-8601 UTC to the second, like the run report's times."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: object) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a key from the input cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
