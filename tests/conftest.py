"""Shared fixtures: a plugin registry, config files, and running the real `etl` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from etl_core.registry import Registry, make_plugin_manager
from tests.pgserver import PostgresServer, create_database, start_server, stop_server

ETL = [sys.executable, "-m", "etl_core.cli"]

#: The cxone sink's options, pointed at a server by the CXONE_* variables at run time.
CXONE_SINK_OPTIONS = {
    "base_url": "${CXONE_BASE_URL}",
    "token_url": "${CXONE_TOKEN_URL}",
    "client_id": "${CXONE_CLIENT_ID}",
    "client_secret": "${CXONE_CLIENT_SECRET}",
    "scope": "contact:write",
    "path_template": "/api/v2/contacts/{contactId}",
    "method": "PATCH",
}

#: The usual validate rules: a uuid key, and a well-formed email where there is one.
CONTACT_RULES = {"contactId": "[required, uuid]", "email": "[email]"}

#: The user property under which a hostile test reports its runs' peak RSS and time.
HOSTILE_RUN = "hostile_run"


def pipeline_config(
    *,
    name: str,
    csv: str | Path,
    out: str | Path,
    fields: Mapping[str, str],
    drop_empty: bool = True,
    validate: Mapping[str, str] | None = CONTACT_RULES,
    sink: str = "cxone",
    sink_options: Mapping[str, str] = CXONE_SINK_OPTIONS,
    sink_extra: str = "",
    workers: int = 8,
    run_extra: str = "",
    output_extra: str = "",
    extra: str = "",
) -> str:
    """The YAML text of a pipeline keyed on contactId: csv source, map, validate, one sink.

    ``fields``, ``validate`` and ``sink_options`` map a name to its YAML text, written as is
    (``{"email": "{from: email, normalize: [strip, lower]}"}``); ``validate=None`` leaves the
    validate transform out. ``sink_extra``, ``run_extra`` and ``output_extra`` are YAML lines
    added to those sections (dedented, then indented here); ``extra`` is appended as is.
    The csv and output paths are quoted, so any path makes a valid YAML string.
    """

    def indented(text: str) -> list[str]:
        return textwrap.indent(textwrap.dedent(text).strip(), "  ").splitlines()

    lines = [
        f"pipeline: {name}",
        "key: contactId",
        "source:",
        "  type: csv",
        f"  path: {json.dumps(str(csv))}",
        "transforms:",
        "  - type: map",
        "    fields:",
        *(f"      {field}: {spec}" for field, spec in fields.items()),
    ]
    if drop_empty:
        lines.append("    drop_empty: true")
    if validate is not None:
        lines += ["  - type: validate", "    fields:", *(f"      {field}: {rules}" for field, rules in validate.items())]
    lines += [
        "sink:",
        f"  type: {sink}",
        *(f"  {option}: {value}" for option, value in sink_options.items()),
        *indented(sink_extra),
        "run:",
        f"  workers: {workers}",
        *indented(run_extra),
        "output:",
        f"  dir: {json.dumps(str(out))}",
        *indented(output_extra),
    ]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry(make_plugin_manager())


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a YAML config (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


def run_etl(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `etl` command line in a subprocess and capture its output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CXONE_")}
    full_env.update(env or {})
    return subprocess.run(
        [*ETL, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def install_distribution(source: Path, work: Path) -> Path:
    """Install the distribution at ``source`` into a directory of its own, as pip would.

    Built from a copy (an in-tree build would leave ``build/`` and ``*.egg-info`` beside
    the sources), with this environment's pip, offline.

    Returns:
        The directory it was installed into: put it on ``PYTHONPATH`` to use it.
    """
    copy, site = work / "src", work / "site"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(copy)],
        check=True, capture_output=True, timeout=300,
    )
    return site


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the test session (one per test process); it must start."""
    server = start_server()  # raises, so that every test that needs it fails: CI never passes without it
    yield server
    stop_server(server)


@pytest.fixture
def postgres_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database of its own for this test (the password in it)."""
    return create_database(postgres, f"t{abs(hash(request.node.nodeid)):x}"[:40])


@pytest.fixture(autouse=True)
def _reset_logging():
    """Each test starts with structlog's defaults, whatever an earlier test configured."""
    import structlog

    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (in their order): the workers share out the rest around them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The hostile suite's worst peak RSS and wall time, gathered from every process's reports."""
    runs = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "teardown"
        for name, value in getattr(report, "user_properties", ())
        if name == HOSTILE_RUN
    ]
    if runs:
        heaviest = max(runs, key=lambda run: run["rss_mb"])
        slowest = max(runs, key=lambda run: run["seconds"])
        terminalreporter.write_line(
            f"hostile runs: {len(runs)}; worst peak RSS {heaviest['rss_mb']:.0f} MB ({heaviest['test']}); "
            f"worst wall time {slowest['seconds']:.1f} s ({slowest['test']})"
        )
