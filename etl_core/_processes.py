"""``run.processes``: one run split over N shard processes of this machine, under one parent.

The parent starts ``etl run CONFIG --shard K/N`` for K = 0 .. N-1 (its own command line
otherwise), each in a process group of its own, so that a Ctrl-C reaches the parent
alone, which forwards it (and SIGTERM) to every shard once. The shards write their log
lines to the parent's stdout and stderr, each line with its ``shard`` field, and their
progress snapshots to a pipe of the parent, which draws one progress bar from them. At
the end the parent reads the shards' reports, writes one report of the whole run, prints
one summary and exits with the worst shard's exit code (:data:`WORST_FIRST`).

A shard that dies without a report (``kill -9``, a crash) is named on stderr and makes
the exit code at least 1; the other shards finish their records, and running the same
command again resumes every shard where it stopped. A parent that dies so (nothing is
forwarded) stops its shards as SIGTERM does (:func:`stop_with_parent`, on Linux).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError
from ._shard import SHARD_NEEDS_KEY, SHARD_VARIABLE, Shard

if TYPE_CHECKING:
    from .config import PipelineModel
    from .progress import ProgressBar

#: The shards' exit codes from the worst to the best, as docs/exit-codes.md orders them:
#: nothing done for a usage error or a taken lease, then interrupted, stopped with
#: records left or failed, stopped because the destination is down, all done.
WORST_FIRST = (2, 73, 143, 130, 1, 75, 0)
#: The exit code of a shard that ended otherwise (killed by a signal, crashed).
_EXIT_CRASHED = 1
#: The environment variable through which a shard gets the pipe for its progress snapshots.
PROGRESS_FD_VARIABLE = "_ETL_PROGRESS_FD"
#: The environment variable through which a shard learns its parent's process id.
PARENT_VARIABLE = "_ETL_PARENT_PID"
#: ``prctl`` option: the signal the kernel sends a process when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1
#: Seconds between two looks at the shards (and redraws of the progress bar).
_POLL_S = 0.25
#: The most of a shard's report read (a report is a few kilobytes).
_REPORT_MAX_BYTES = 1 << 20


def stop_with_parent(environ: Mapping[str, str]) -> None:
    """In a shard that a parent started: stop gracefully (SIGTERM) if the parent dies.

    A parent killed with SIGKILL forwards nothing: without this its shards would run on
    unseen, holding their leases, so that running the command again is refused until
    they end. Linux only (``prctl``); elsewhere they run to their end.
    """
    parent = environ.get(PARENT_VARIABLE)
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != parent:  # it died before the call: nobody would tell
        os.kill(os.getpid(), signal.SIGTERM)


def processes_of(model: PipelineModel) -> int:
    """How many shard processes ``run.processes`` asks for (``auto``: one per CPU)."""
    wanted = model.run.processes
    return max(1, os.cpu_count() or 1) if wanted == "auto" else wanted


def worst_exit_code(codes: Sequence[int]) -> int:
    """The worst of the shards' exit codes (:data:`WORST_FIRST`; an unknown code counts as a crash)."""
    known = [code if code in WORST_FIRST else _EXIT_CRASHED for code in codes]
    return min(known, key=WORST_FIRST.index, default=0)


def run_processes(args: argparse.Namespace, model: PipelineModel, count: int, command_line: Sequence[str]) -> int:
    """Run the pipeline as ``count`` shard processes; return the worst shard's exit code.

    Args:
        args: The parsed ``etl run`` arguments.
        model: The config's core settings.
        count: How many shard processes.
        command_line: The arguments ``etl`` was given (each shard gets them plus ``--shard``).

    Raises:
        ConfigError: The pipeline has no ``key`` (nothing to give records their shard by).
    """
    if model.key is None:
        raise ConfigError(SHARD_NEEDS_KEY, path="key", source=args.config)
    from .progress import ProgressBar

    bar = None if args.no_progress else ProgressBar.for_terminal(dry_run=args.dry_run)
    parent = _Parent(args, model, count, command_line, progress=bar is not None)
    with bar if bar is not None else contextlib.nullcontext():
        parent.run(bar)
    return parent.finish()


class _Shard:
    """One shard process, as the parent sees it."""

    def __init__(self, shard: Shard, process: subprocess.Popen[bytes], progress_fd: int | None) -> None:
        self.shard = shard
        self.process = process
        self.snapshot: dict[str, Any] | None = None
        self.reader: threading.Thread | None = None
        if progress_fd is not None:
            self.reader = threading.Thread(target=self._read_progress, args=(progress_fd,), daemon=True)
            self.reader.start()

    def _read_progress(self, fd: int) -> None:
        """Keep the shard's last progress snapshot (runs in a thread until the shard closes the pipe)."""
        with open(fd, encoding="utf-8", errors="replace") as pipe:
            for line in pipe:
                with contextlib.suppress(ValueError):
                    self.snapshot = json.loads(line)


class _Parent:
    """Starts the shards, forwards signals to them, and merges what they report."""

    def __init__(self, args: argparse.Namespace, model: PipelineModel, count: int, command_line: Sequence[str], *, progress: bool) -> None:
        self._args = args
        self._model = model
        self._count = count
        self._command_line = list(command_line)
        self._progress = progress
        self._shards: list[_Shard] = []
        self._signal: signal.Signals | None = None
        self._started_at = datetime.datetime.now(datetime.UTC)
        self._started = time.monotonic()
        base = os.path.abspath(model.output.dir)
        if args.sandbox:
            base = os.path.join(base, "sandbox")  # where `etl run --sandbox` writes
        self._output_dir = os.path.join(base, "dry-run") if args.dry_run else base

    def run(self, bar: ProgressBar | None) -> None:
        """Start every shard, then wait for them all, drawing ``bar`` (if any) meanwhile."""
        previous = {signum: signal.signal(signum, self._forward) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            for index in range(self._count):
                self._shards.append(self._start(Shard(index, self._count)))
            while any(shard.process.poll() is None for shard in self._shards):
                self._draw(bar)
                time.sleep(_POLL_S)
            for shard in self._shards:
                if shard.reader is not None:
                    shard.reader.join()
            self._draw(bar)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for shard in self._shards:  # the parent failed: no shard is left running unseen
                if shard.process.poll() is None:
                    shard.process.terminate()
                    shard.process.wait()

    def _start(self, shard: Shard) -> _Shard:
        command = [sys.executable, "-m", "etl_core.cli", *self._command_line, "--shard", str(shard), "--no-progress"]
        env = {name: value for name, value in os.environ.items() if name not in (SHARD_VARIABLE, PROGRESS_FD_VARIABLE)}
        env[PARENT_VARIABLE] = str(os.getpid())
        read_fd = write_fd = None
        if self._progress:
            read_fd, write_fd = os.pipe()
            env[PROGRESS_FD_VARIABLE] = str(write_fd)
        try:
            # A process group of its own: a Ctrl-C at the terminal reaches the parent
            # only, which forwards it once (twice would stop the shard at once).
            process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, process_group=0, pass_fds=(write_fd,) if write_fd is not None else ()
            )
        except BaseException:
            if read_fd is not None:
                os.close(read_fd)
            raise
        finally:
            if write_fd is not None:
                os.close(write_fd)
        if self._signal is not None:  # it came while this shard was starting
            process.send_signal(self._signal)
        return _Shard(shard, process, read_fd)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        """Pass SIGINT or SIGTERM on to every shard still running."""
        if self._signal is None:
            self._signal = signal.Signals(signum)
        for shard in self._shards:
            if shard.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    shard.process.send_signal(signum)

    def _draw(self, bar: ProgressBar | None) -> None:
        """Redraw ``bar`` from the shards' last snapshots (a snapshot it cannot read skips a frame)."""
        if bar is None:
            return
        try:
            snapshot = self._snapshot()
        except (KeyError, TypeError, ValueError):  # written by a shard of another version, say
            return
        bar.update(snapshot)

    def _snapshot(self) -> dict[str, Any]:
        """One progress snapshot of the whole run, from the shards' last ones."""
        snapshots = [shard.snapshot for shard in self._shards if shard.snapshot is not None]
        counted = ("read", "ok", "rejected", "failed", "skipped", "in_flight", "retrying")
        records: dict[str, Any] = {name: sum(s["records"].get(name, 0) for s in snapshots) for name in counted}
        # Each shard's total is its share of the input (estimated until it has read it all).
        totals = [s["records"].get("total") for s in snapshots]
        records["total"] = sum(totals) if len(totals) == self._count and None not in totals else None
        progress = [s["progress"] for s in snapshots]
        return {
            "records": records,
            "progress": {
                "done": max((p["done"] for p in progress), default=0),
                "total": max((p["total"] for p in progress if p["total"] is not None), default=None),
                "end_of_input": bool(progress) and len(progress) == self._count and all(p["end_of_input"] for p in progress),
            },
            "paused_s": max((s["paused_s"] for s in snapshots), default=0.0),
            "outage_s": max((s["outage_s"] for s in snapshots), default=0.0),
            "elapsed_s": time.monotonic() - self._started,
        }

    def finish(self) -> int:
        """Say which shards failed, write the report of the whole run, print its summary; return the exit code."""
        from .report import write_report

        codes = []
        reports: list[dict[str, Any] | None] = []
        for shard in self._shards:
            code = shard.process.returncode
            report = self._report_of(shard.shard)
            if self._signal is not None and code == -self._signal:
                code = 128 + self._signal  # stopped by the signal passed on before it could handle it
            elif code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
                _error(
                    f"shard {shard.shard} (process {shard.process.pid}) was killed by {name} and left no report of this "
                    "run: run the same command again to resume it"
                )
                report = None
            codes.append(code)
            reports.append(report)
        exit_code = worst_exit_code(codes)
        merged = self._merge(reports, codes, exit_code)
        path = os.path.join(self._output_dir, self._model.output.report)
        try:
            write_report(path, merged)
        except OSError as exc:
            _error(f"the report could not be written to {path}: {exc.strerror or exc}")
            merged["files"]["report"] = None
            exit_code = worst_exit_code([exit_code, _EXIT_CRASHED])
        if not self._args.no_progress:
            from ._summary import run_summary
            from .progress import terminal_console

            if (console := terminal_console()) is not None:
                console.print(run_summary(merged, resumes=not self._args.sandbox))
        return exit_code

    def _report_of(self, shard: Shard) -> dict[str, Any] | None:
        """The shard's report of this run (None when it wrote none: an older one may be there)."""
        from ._regular_file import open_regular_file

        path = os.path.join(self._output_dir, shard.file_name(self._model.output.report))
        try:
            with open_regular_file(path) as file:
                report = json.loads(file.read(_REPORT_MAX_BYTES))
            started = datetime.datetime.fromisoformat(report["started_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(report, dict) or started < self._started_at:
            return None
        return report

    def _merge(self, reports: list[dict[str, Any] | None], codes: list[int], exit_code: int) -> dict[str, Any]:
        """The report of the whole run: the shards' counts added up, and one entry per shard."""
        finished_at = datetime.datetime.now(datetime.UTC)
        done = [report for report in reports if report is not None]
        records = _add([report["records"] for report in done])
        for name in ("read", "ok", "rejected", "failed", "skipped", "not_processed"):
            records.setdefault(name, 0)
        duration = (finished_at - self._started_at).total_seconds()
        aborted = [f"shard {s.shard}: {r['aborted']}" for s, r in zip(self._shards, reports, strict=True) if r and r.get("aborted")]
        aborted += [f"shard {s.shard}: no report (exit code {code})" for s, r, code in zip(self._shards, reports, codes, strict=True) if r is None]
        rejects = [r["files"]["rejects"] for r in done if r["files"].get("rejects")]
        if len(rejects) > 1:  # one name for them all: rejects-shard-*-of-4.csv
            stem, extension = os.path.splitext(self._model.output.rejects)
            rejects = [os.path.join(self._output_dir, f"{stem}-shard-*-of-{self._count}{extension}")]
        report_path = os.path.join(self._output_dir, self._model.output.report)
        return {
            "run_id": uuid.uuid4().hex,
            "pipeline": self._model.pipeline,
            "config": self._args.config,
            "dry_run": bool(self._args.dry_run),
            "started_at": _iso(self._started_at),
            "finished_at": _iso(finished_at),
            "duration_s": round(duration, 3),
            "exit_code": exit_code,
            "interrupted_by": self._signal.name if self._signal is not None else None,
            "aborted": "; ".join(aborted) or None,
            "records": records,
            "requests": _add([report["requests"] for report in done]),
            "quota": None,  # measured by each shard: see the shards' reports
            "rate_per_s": round(records["ok"] / duration, 1) if duration > 0 else None,
            "files": {
                "report": report_path,
                "rejects": rejects[0] if rejects else None,
                "success": None,
                "state": next((r["files"]["state"] for r in done if r["files"].get("state")), None),
            },
            "shard": None,
            "shards": [
                {
                    "shard": str(shard.shard),
                    "exit_code": code,
                    "report": report["files"]["report"] if report else None,
                    "rejects": report["files"]["rejects"] if report else None,
                    "records": report["records"] if report else None,
                    "other_shards": report["shard"]["other_shards"] if report and report.get("shard") else None,
                }
                for shard, report, code in zip(self._shards, reports, codes, strict=True)
            ],
        }


def _add(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up the numbers of several reports' sections, key by key (nested sections too)."""
    total: dict[str, Any] = {}
    for part in parts:
        for name, value in part.items():
            if isinstance(value, Mapping):
                total[name] = _add([total.get(name) or {}, value])
            elif isinstance(value, int | float) and not isinstance(value, bool):
                previous = total.get(name)
                total[name] = value + (previous if isinstance(previous, int | float) else 0)
            else:
                total.setdefault(name, value)
    return total


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(message: str) -> None:
    from .logging import redact

    print(f"etl: error: {redact(message)}", file=sys.stderr, flush=True)
