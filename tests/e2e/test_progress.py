"""The progress bar and the end-of-run summary: drawn on stderr under a terminal, absent when stderr is piped."""

from __future__ import annotations

import json
import os
import pty
import re
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
{extra}
"""

#: A drawing of the bar once the total is known (one line; drawings are parted by carriage returns).
FRAME = re.compile(
    r"(\d+)% +([\d,]+)/([\d,]+) rows[^\r\n]*? ok ([\d,]+) +rejected ([\d,]+) +failed ([\d,]+)(?: +skipped ([\d,]+))?"
)
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def write_inputs(tmp_path: Path, rows: int = 2000, extra: str = "") -> Path:
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(rows)))
    config = tmp_path / "p.yaml"
    config.write_text(CONFIG.format(csv=csv_path, out=tmp_path / "out", extra=extra))
    return config


def run_on_a_terminal(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run `etl` with stderr on a pseudo-terminal 160 columns wide; return (exit code, screen, stdout)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen(
        [*ETL, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, cwd=cwd, env=env, text=True
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
    return process.returncode, screen.decode(errors="replace"), stdout


def test_progress_bar_and_summary_on_a_terminal(tmp_path):
    config = write_inputs(tmp_path)
    code, screen, stdout = run_on_a_terminal("run", str(config), "--log-format", "json", cwd=tmp_path)
    assert code == 0
    assert "sending" in screen and "2,000/2,000 rows" in screen and "ok 2,000" in screen
    # The summary, once the bar is done: the outcomes, the files, what to do next.
    summary = ESCAPE.sub("", screen[screen.rindex("Finished in") :])
    assert re.search(r"^ok +2,000 +delivered", summary, re.MULTILINE)
    assert str(tmp_path / "out" / "report.json") in summary
    assert "nothing left to do" in summary
    # The JSON logs on stdout stay clean: no bar, no summary, no escape codes.
    for line in stdout.splitlines():
        json.loads(line)
    assert "\x1b[" not in stdout and "Finished in" not in stdout


def test_the_bar_never_shows_100_percent_while_rows_are_unsent(tmp_path):
    # The reader is done with the file at once; the sends take seconds (300 a second at most).
    rows = 900
    config = write_inputs(tmp_path, rows=rows, extra="run: {rate: {max_rate: 300}}")
    code, screen, _ = run_on_a_terminal("run", str(config), "--log-format", "json", cwd=tmp_path)
    assert code == 0
    frames = [
        (
            int(m[1]),
            int(m[2].replace(",", "")),
            int(m[3].replace(",", "")),
            sum(int(n.replace(",", "")) for n in m.groups("0")[3:]),
        )
        for m in FRAME.finditer(ESCAPE.sub("", screen))
    ]
    assert frames, screen
    for percent, done, total, finished in frames:
        assert total == rows  # rows, not bytes
        assert done == finished  # the bar counts the records finished
        assert percent <= 100 * finished / total
    assert any(percent < 100 for percent, *_ in frames)  # seen while rows were still unsent
    assert frames[-1][:3] == (100, rows, rows)


def test_no_progress_bar_or_summary_when_piped(tmp_path):
    config = write_inputs(tmp_path)
    result = run_etl("run", str(config), "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""
    assert "\x1b[" not in result.stdout and "Finished in" not in result.stdout


def test_no_progress_flag_under_a_terminal(tmp_path):
    config = write_inputs(tmp_path, rows=10)
    code, screen, _ = run_on_a_terminal("run", str(config), "--log-format", "json", "--no-progress", cwd=tmp_path)
    assert code == 0
    assert "sending" not in screen and "Finished in" not in screen
