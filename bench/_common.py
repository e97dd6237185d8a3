"""Helpers shared by the benchmark scripts.

Every benchmark runs the real ``etl`` command in a subprocess (through
``_rusage.py``, which measures its CPU time and peak memory) against the CXone
sandbox, also started in a subprocess on a free 127.0.0.1 port. Nothing here talks
to anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CONFIG = ROOT / "configs" / "cxone-contacts.yaml"
PYTHON = sys.executable
RUSAGE = BENCH / "_rusage.py"
#: Report of the shipped config, relative to the directory the run starts in.
REPORT = Path("out") / "cxone-contacts" / "report.json"
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
DEFAULT_SEEDS = 100_000

_NAMESPACE = bytes.fromhex("e939f68180605d64a544d97988252da1")  # etl_cxone.sandbox.NAMESPACE


# ----------------------------------------------------------------------------- command line


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds: a smoke check")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return p


def etl_command(*args: str) -> list[str]:
    """The ``etl`` command line, run by this interpreter."""
    return [PYTHON, "-m", "etl_core.cli", *args]


# ----------------------------------------------------------------------------- data


def contact_ids(count: int) -> list[str]:
    """``etl_cxone.sandbox.contact_id(i)`` for i < count, computed quickly."""
    sha1 = hashlib.sha1
    ids = []
    for i in range(count):
        d = bytearray(sha1(_NAMESPACE + b"contact-%d" % i).digest()[:16])
        d[6] = (d[6] & 0x0F) | 0x50
        d[8] = (d[8] & 0x3F) | 0x80
        h = d.hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


_FIRST = ("Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Isla", "James", "Ava", "Mia")
_LAST = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Patel", "Khan", "Nguyen")
_CITIES = ("Boston", "Denver", "Austin", "Seattle", "Leeds", "Bristol", "Chicago", "Portland")


def write_contacts_csv(
    path: Path, rows: int, *, seed_count: int = DEFAULT_SEEDS, unique: bool = False, first: int = 0
) -> Path:
    """Write ``rows`` valid contact rows to ``path``.

    Every row passes the shipped config's map and validate transforms. By default the
    ids are those of the sandbox's seeded contacts from number ``first`` on (cycled
    after ``seed_count``), so each row becomes one PATCH the sandbox applies; with
    ``unique`` every row gets its own made-up id (for dry runs of millions of distinct
    contacts).
    """
    ids = [] if unique else contact_ids(min(first + rows, seed_count))[first:]
    n_ids = len(ids)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("contact_id,first_name,last_name,email,phone,city\n")
        chunk: list[str] = []
        for i in range(rows):
            first = _FIRST[i % 12]
            last = _LAST[i % 11]
            cid = f"00000000-0000-4000-8000-{i:012x}" if unique else ids[i % n_ids]
            chunk.append(
                f"{cid},{first},{last},{first.lower()}.{last.lower()}{i % 97}@example.com,"
                f"+1617555{i % 10000:04d},{_CITIES[i % 8]}\n"
            )
            if len(chunk) >= 10_000:
                fh.write("".join(chunk))
                chunk.clear()
        fh.write("".join(chunk))
    return path


def bare_csv_rate(path: Path) -> tuple[int, float]:
    """Read ``path`` with a bare csv.reader loop; return (rows, seconds)."""
    started = time.perf_counter()
    rows = 0
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for _ in reader:
            rows += 1
    return rows, time.perf_counter() - started


@contextlib.contextmanager
def workdir(prefix: str = "etl-bench-") -> Iterator[Path]:
    """A temporary directory, removed afterwards (runs write their output under it).

    With ``ETL_BENCH_KEEP=DIR`` in the environment, its logs, reports and run figures
    (not the input CSV nor the state files) are copied to ``DIR/<its name>`` first, so
    that a surprising figure can be traced afterwards.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        keep = os.environ.get("ETL_BENCH_KEEP")
        if keep:
            shutil.copytree(path, Path(keep) / path.name, ignore=shutil.ignore_patterns("*.csv", "*.db", "*.db-*"), dirs_exist_ok=True)
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- sandbox


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a running process, from /proc (None where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sandbox:
    """The CXone sandbox in a subprocess (``etl sandbox cxone``) on a free port."""

    def __init__(
        self,
        *,
        rate_limit: float | None = None,
        burst: float | None = None,
        retry_after: str = "seconds",
        latency: float = 0.0,
        seed_count: int = DEFAULT_SEEDS,
        log: Path | None = None,
        port: int | None = None,
        options: Sequence[str] = (),
    ) -> None:
        """Start it; ``port`` (default: a free one) and more ``etl sandbox cxone`` ``options``."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["--port", str(self.port), "--retry-after", retry_after, "--latency", str(latency)]
        args += ["--seed-count", str(seed_count), *options]
        if rate_limit is not None:
            args += ["--rate-limit", str(rate_limit)]
        if burst is not None:
            args += ["--burst", str(burst)]
        self._log = open(log, "wb") if log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            etl_command("sandbox", "cxone", *args), stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.stats()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.05)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """GET /sandbox/stats, without the bulky per-contact lists."""
        stats = self._call("GET", "/sandbox/stats")
        stats.pop("updates", None)
        stats.pop("paths", None)
        return stats

    def settings(self, **changes: Any) -> dict[str, Any]:
        """POST /sandbox/settings."""
        return self._call("POST", "/sandbox/settings", changes)

    def reset(self) -> None:
        self._call("POST", "/sandbox/reset", {})

    def cpu_seconds(self) -> float | None:
        return _cpu_seconds(self.proc.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sandbox_env(sandbox: Sandbox, csv_path: Path) -> dict[str, str]:
    """The environment the shipped config reads, pointing at ``sandbox``."""
    env = dict(os.environ)
    env.update(
        CXONE_BASE_URL=sandbox.url,
        CXONE_TOKEN_URL=sandbox.url + "/oauth/token",
        CXONE_CLIENT_ID=CLIENT_ID,
        CXONE_CLIENT_SECRET=CLIENT_SECRET,
        CONTACTS_CSV=str(csv_path),
        PYTHONUNBUFFERED="1",
    )
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def dummy_env(csv_path: Path) -> dict[str, str]:
    """Environment for runs that send nothing (dry run, validate)."""
    env = dict(os.environ)
    env.update(
        CXONE_BASE_URL="http://127.0.0.1:9",
        CXONE_TOKEN_URL="http://127.0.0.1:9/oauth/token",
        CXONE_CLIENT_ID=CLIENT_ID,
        CXONE_CLIENT_SECRET=CLIENT_SECRET,
        CONTACTS_CSV=str(csv_path),
    )
    return env


# ----------------------------------------------------------------------------- running etl


class Run:
    """A measured subprocess (``etl ...`` or another command) started through ``_rusage.py``.

    The command runs in ``cwd`` in its own session, with stdout (the JSON log lines)
    written to ``cwd/<name>.log``. :meth:`wait` returns the rusage figures, plus the
    run report when there is one.
    """

    def __init__(self, command: Sequence[str], *, cwd: Path, env: dict[str, str], name: str = "etl") -> None:
        self.cwd = cwd
        self.name = name
        self.usage_path = cwd / f"{name}.rusage.json"
        self.log_path = cwd / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [PYTHON, str(RUSAGE), str(self.usage_path), "--", *command],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self) -> None:
        """Ask the run to stop (as Ctrl-C would)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait at most ``timeout`` seconds (then interrupt, then kill); return the figures."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.interrupt()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        result: dict[str, Any] = {"timed_out": time.perf_counter() - self.started >= timeout}
        try:
            result.update(json.loads(self.usage_path.read_text()))
        except (OSError, ValueError):
            result["exit_code"] = self.proc.returncode
        # The run report: out/<pipeline>/report.json, or a subdirectory of it for dry
        # runs; the newest one is this run's.
        reports = sorted((self.cwd / REPORT.parent).rglob(REPORT.name), key=lambda p: p.stat().st_mtime)
        if reports:
            result["report"] = json.loads(reports[-1].read_text())
        return result

    def tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def run_etl(args: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float, name: str = "etl") -> dict[str, Any]:
    """Run ``etl ARGS`` to the end (bounded by ``timeout``) and return its figures."""
    run = Run(etl_command(*args), cwd=cwd, env=env, name=name)
    result = run.wait(timeout)
    if result.get("exit_code") not in (0, 1) and not result.get("timed_out"):
        result["log_tail"] = run.tail()
    return result


def etl_run_args(*extra: str, workers: int | None = None) -> list[str]:
    args = ["run", str(CONFIG), "--log-format", "json", "--no-progress", *extra]
    if workers is not None:
        args += ["--workers", str(workers)]
    return args


# ----------------------------------------------------------------------------- output


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table."""
    cells = [[str(h) for h in header]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)), "  ".join("-" * w for w in widths)]
    for row in cells[1:]:
        lines.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(text) and text.lstrip("-+").replace(".", "", 1).replace(",", "").rstrip("%x").isdigit()


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def save_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str))


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python version."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}


def run_naive(csv_path: Path, sandbox: Sandbox, *, workers: int, cwd: Path, timeout: float) -> dict[str, Any]:
    """Run ``naive_client.py`` (the baseline) against ``sandbox`` and return its figures."""
    command = [PYTHON, str(BENCH / "naive_client.py"), str(csv_path), "--base-url", sandbox.url, "--workers", str(workers)]
    run = Run(command, cwd=cwd, env=sandbox_env(sandbox, csv_path), name="naive")
    result = run.wait(timeout)
    for line in reversed(run.log_path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            result["summary"] = json.loads(line)
            break
    else:
        result["log_tail"] = run.tail()
    return result


def applied_after(sandbox: Sandbox, run: Run, seconds: float) -> int | None:
    """The sandbox's ``applied`` count ``seconds`` after the run's first API request.

    None if the run ends (or sends nothing for a minute) before then.
    """
    deadline = time.monotonic() + 60
    while sandbox.stats()["requests"] == 0:
        if not run.running() or time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    at = time.monotonic() + seconds
    while time.monotonic() < at:
        if not run.running():
            return None
        time.sleep(min(0.25, max(0.0, at - time.monotonic())))
    return sandbox.stats()["applied"]


def api_rate(stats: dict[str, Any]) -> float | None:
    """Updates per second the sandbox applied, from its first to its last API request."""
    first, last = stats.get("first_request_at"), stats.get("last_request_at")
    if first is None or last is None or last <= first:
        return None
    return stats["applied"] / (last - first)


def share_429(stats: dict[str, Any]) -> float | None:
    requests = stats.get("requests") or 0
    return stats.get("by_status", {}).get("429", 0) / requests if requests else None
