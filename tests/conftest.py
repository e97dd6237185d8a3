"""Shared fixtures: a plugin registry, config files, and running the real `etl` command."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from etl_core.plugins import Registry, make_plugin_manager

ETL = [sys.executable, "-m", "etl_core.cli"]


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


@pytest.fixture(autouse=True)
def _reset_logging():
    """Each test starts with structlog's defaults, whatever an earlier test configured."""
    import structlog

    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
