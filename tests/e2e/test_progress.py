"""The progress bar: drawn on stderr under a terminal, absent when stderr is piped."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

from tests.conftest import ETL, run_etl

CONFIG = """
pipeline: progress
source: {{type: csv, path: {csv}}}
sink: {{type: discard}}
output: {{dir: {out}}}
"""


def write_inputs(tmp_path: Path, rows: int = 2000) -> Path:
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(rows)))
    config = tmp_path / "p.yaml"
    config.write_text(CONFIG.format(csv=csv_path, out=tmp_path / "out"))
    return config


def test_progress_bar_on_a_terminal(tmp_path):
    config = write_inputs(tmp_path)
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen(
        [*ETL, "run", str(config), "--log-format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, cwd=tmp_path, env=env, text=True,
    )
    os.close(terminal)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    stdout, _ = process.communicate(timeout=60)
    os.close(controller)
    assert process.returncode == 0
    text = screen.decode(errors="replace")
    assert "sending" in text and "2,000 rows" in text and "ok 2,000" in text
    # The JSON logs on stdout stay clean: no bar, no escape codes.
    for line in stdout.splitlines():
        json.loads(line)
    assert "\x1b[" not in stdout


def test_no_progress_bar_when_piped(tmp_path):
    config = write_inputs(tmp_path)
    result = run_etl("run", str(config), "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""
    assert "\x1b[" not in result.stdout


def test_no_progress_flag_under_a_terminal(tmp_path):
    config = write_inputs(tmp_path, rows=10)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*ETL, "run", str(config), "--log-format", "json", "--no-progress"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, cwd=tmp_path, text=True,
    )
    os.close(terminal)
    process.communicate(timeout=60)
    ready, _, _ = select.select([controller], [], [], 0.1)
    output = b""
    if ready:
        try:
            output = os.read(controller, 65536)
        except OSError:
            pass
    os.close(controller)
    assert process.returncode == 0
    assert b"sending" not in output
