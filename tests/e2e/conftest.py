"""Fixtures for end-to-end runs of `etl run` against the CXone sandbox.

The sandbox runs in the test process (a background thread, 127.0.0.1, a free port); the
`etl` command runs in a subprocess and is pointed at it with the CXONE_* variables, so the
tests can look at what the server saw (``sandbox.stats()``) after the real command ran.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from etl_cxone.sandbox import Sandbox, SandboxSettings, contact_id, run_sandbox_in_thread
from tests.conftest import ETL, pipeline_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = PROJECT_ROOT / "configs" / "cxone-contacts.yaml"
#: Where the shipped config writes its report, rejects and missing-contacts files (relative to cwd).
SHIPPED_OUT = Path("out") / "cxone-contacts"
HEADER = ("contact_id", "first_name", "last_name", "email", "phone", "city")

#: The shipped pipeline's mapping: every column of the sample, normalised.
CONTACT_FIELDS = {
    "contactId": "{from: contact_id, normalize: [strip]}",
    "firstName": "{from: first_name, normalize: [strip, collapse_whitespace]}",
    "lastName": "{from: last_name, normalize: [strip, collapse_whitespace]}",
    "email": "{from: email, normalize: [strip, lower]}",
    "phone": "{from: phone, normalize: [strip]}",
    "city": "{from: city, normalize: [strip]}",
}


def contact_row(i: int, **overrides: str) -> dict[str, str]:
    """A CSV row (shipped sample's columns) updating seeded contact ``i``."""
    row = {
        "contact_id": contact_id(i),
        "first_name": f"  First{i} ",
        "last_name": f"Last  {i}",
        "email": f" User{i}@Example.COM",
        "phone": f"+1415555{i % 10_000:04d}",
        "city": f"City {i % 17}",
    }
    row.update(overrides)
    return row


def expected_fields(row: dict[str, str]) -> dict[str, str]:
    """What the sandbox should hold for a row after the shipped mapping (empty cells left out)."""
    mapped = {
        "firstName": " ".join(row["first_name"].split()),
        "lastName": " ".join(row["last_name"].split()),
        "email": row["email"].strip().lower(),
        "phone": row["phone"].strip(),
        "city": row["city"].strip(),
    }
    return {"contactId": row["contact_id"].strip(), **{k: v for k, v in mapped.items() if v}}


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write rows as a CSV file with the shipped sample's header."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def sandbox_env(sandbox: Sandbox, csv_path: Path | None = None) -> dict[str, str]:
    """The environment that points the shipped config at ``sandbox`` (and at ``csv_path``)."""
    env = {
        "CXONE_BASE_URL": sandbox.url,
        "CXONE_TOKEN_URL": sandbox.url + "/oauth/token",
        "CXONE_CLIENT_ID": sandbox.settings.client_id,
        "CXONE_CLIENT_SECRET": sandbox.settings.client_secret,
    }
    if csv_path is not None:
        env["CONTACTS_CSV"] = str(csv_path)
    return env


class EtlProcess:
    """The real `etl` command started without waiting (like tests.conftest.run_etl).

    Output goes to files, not pipes, so a chatty run never blocks on a full pipe while
    the test is busy polling the sandbox.
    """

    def __init__(self, *args: str, cwd: Path, env: dict[str, str]) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CXONE_")}
        full_env.update(env)
        self._stdout = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [*ETL, *args], cwd=cwd, env=full_env, stdout=self._stdout, stderr=self._stderr,
            stdin=subprocess.DEVNULL, text=True,
        )
        self.returncode: int | None = None
        self.stdout = self.stderr = ""

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float = 120) -> EtlProcess:
        """Wait for the command to end and read its output; fail with its last lines if it does not."""
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            tail = "\n".join((self.stdout + self.stderr).splitlines()[-40:])
            raise AssertionError(f"etl still ran after {timeout} s; its last lines:\n{tail}") from None
        finally:
            self.stop()
        return self

    def stop(self) -> None:
        """Kill the command if it still runs (idempotent) and read its output."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._stdout.closed:
            return
        for name in ("_stdout", "_stderr"):
            file = getattr(self, name)
            file.seek(0)
            setattr(self, name[1:], file.read())
            file.close()

    def __enter__(self) -> EtlProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def json_logs(stdout: str) -> list[dict[str, Any]]:
    """Parse JSON log lines; every line on stdout must be one JSON object."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def log_time(event: dict[str, Any]) -> float:
    """The wall-clock time (epoch seconds) of a JSON log line."""
    return datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def wait_until(condition: Callable[[], bool], *, timeout: float = 30.0, interval: float = 0.005) -> None:
    """Poll until ``condition()`` is true (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(interval)


class RequestLog:
    """Arrival time (wall clock) and answer of every API request a sandbox receives.

    The sandbox's stats() only keep the first and last request times, so this wraps the
    sandbox's API handler of one instance (test instrumentation; the sandbox is unchanged).
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.entries: list[tuple[float, int | None]] = []
        handler = sandbox._api

        async def timed(request: Any) -> Any:
            arrived = time.time()
            response = await handler(request)
            self.entries.append((arrived, getattr(response, "status", None)))
            return response

        sandbox._api = timed  # type: ignore[method-assign]


class IssuedTokens:
    """Every access token a sandbox issues, read from its token responses.

    The sandbox does not list the tokens it issued (expired ones are forgotten), so this
    wraps the token handler of one instance and reads each response body.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.tokens: list[str] = []
        handler = sandbox._token

        def recording(request: Any) -> Any:
            response = handler(request)
            if getattr(response, "status", None) == 200:
                self.tokens.append(json.loads(response.body)["access_token"])
            return response

        sandbox._token = recording  # type: ignore[method-assign]


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start a sandbox (``SandboxSettings`` keywords) on 127.0.0.1; stopped after the test."""
    with ExitStack() as stack:

        def start(**settings: Any) -> Sandbox:
            settings.setdefault("host", "127.0.0.1")
            settings.setdefault("port", 0)
            settings.setdefault("seed_count", 5_000)
            return stack.enter_context(run_sandbox_in_thread(SandboxSettings(**settings)))

        yield start


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of the project's configs/ and data/ in tmp_path (so out/ lands there)."""
    for name in ("configs", "data"):
        shutil.copytree(PROJECT_ROOT / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def custom_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a pipeline like the shipped one, with the given knobs; returns its path."""

    def write(
        csv_path: Path,
        *,
        key_rules: str = "[required, uuid]",
        email_rule: str = "email: [email]",
        sink_extra: str = "",
        workers: int = 8,
        run_extra: str = "",
        name: str = "pipeline.yaml",
        out: Path | None = None,
    ) -> Path:
        validate = {"contactId": key_rules}
        if email_rule:  # a whole line, "email: [email]"
            field, rules = email_rule.split(":", 1)
            validate[field.strip()] = rules.strip()
        # The extras' second and later lines come indented already ("rate: ...\n  retry: ..."):
        # indent the first line as well, so that they dedent as one block.
        text = pipeline_config(
            name="cxone-e2e",
            csv=csv_path,
            out=out or tmp_path / "out",
            fields=CONTACT_FIELDS,
            validate=validate,
            sink_extra="  " + sink_extra,
            workers=workers,
            run_extra="  " + run_extra,
        )
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
