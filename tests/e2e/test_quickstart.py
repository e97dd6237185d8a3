"""docs/quickstart.md runs as written: its commands, in page order, in one directory.

How the page is read
    * A ``sh`` block holds commands, one a line (a trailing ``# comment`` is dropped).
      They run; what they print is not compared.
    * A ``console`` block shows a terminal: a ``$ COMMAND`` line runs the command, and the
      lines after it, up to the next ``$`` line, are what it prints. Lines before the
      block's first ``$`` line are more of what the command run last prints (the page
      shows a run's summary and its last log line apart, with prose between).
    * ``$ echo $?`` shows the exit status of the command before it. A command whose status
      the page does not show must exit with 0 or 1 (1: a run whose input has bad rows);
      none may print a traceback.
    * A ``yaml`` block followed by "Save it as `NAME`" is written to NAME there.
    * Other blocks (``text``, ``json``...) are illustrations, not compared.
    * SKIPPED and SKIPPED_SECTIONS name the commands that are not run, and why. The
      config the page shows ``etl guess`` writing is checked by a test of its own, on the
      export the page describes.

How a command runs
    Through bash (``$?`` is the previous command's status), in a fresh directory holding copies of configs/ and data/, with
    ``.venv/bin`` (a link to this venv's ``etl``) first on PATH, and stdout and stderr each
    on an 80-column pseudo-terminal, as on a user's terminal: console logs, the progress
    bar and the summary are drawn.

How the output is compared
    The output is the lines of stdout followed by those of stderr, colours removed,
    trailing spaces dropped, and a line redrawn with ``\\r`` as it was drawn last. The
    lines a block shows must appear in the output in the same order and next to each
    other, except where the block has a ``...`` line: it stands for any lines left out.
    Before comparing, these varying parts are replaced on both sides:

    * an ISO 8601 timestamp (``2026-05-04T09:12:31.353039Z``) by ``<time>``;
    * a run id (32 hex digits) by ``<run id>``;
    * a number with a decimal point, a duration or a rate (``0.399``, ``1,115.7``), by ``<n>``
      (whole numbers, such as counts, line numbers and exit codes, are compared as they are);
    * the sandbox's port (``127.0.0.1:40343``) by ``<port>``;
    * the page's project directory, ``/home/you/etl``, and the directory the commands run
      in by ``<project>``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fcntl
import itertools
import os
import pty
import re
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_etl
from tests.e2e.conftest import PROJECT_ROOT
from tests.e2e.test_guess import semicolons

QUICKSTART = PROJECT_ROOT / "docs" / "quickstart.md"
README = PROJECT_ROOT / "README.md"

#: Commands of the page that are not run, and why.
SKIPPED = {
    "python3 -m venv .venv": "creates the venv: the test runs in the installed one",
    ".venv/bin/pip install -e .": "installs etl: the test runs in the installed venv",
    "etl guess export.csv -o contacts.yaml": (
        "export.csv stands for the reader's own export: test_the_guess_example_is_what_guess_writes makes the one shown"
    ),
}
#: Sections of the page whose commands are not run, and why.
SKIPPED_SECTIONS = {"6. Run against a real tenant": "needs a real CXone tenant, its URLs and its credentials"}

#: README.md's first two commands: install and run on the sandbox, install and test.
README_RUN = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/etl run configs/cxone-contacts.yaml --sandbox"
README_TEST = (
    "python3 -m venv .venv && sh tools/ensure-postgres && .venv/bin/pip install -q -e '.[test]' && .venv/bin/ruff check . && "
    ".venv/bin/mypy && .venv/bin/pytest"
)

#: The page's name for the directory the commands run in.
PAGE_PROJECT = "/home/you/etl"
ELLIPSIS = "..."
PLACEHOLDERS = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"), "<time>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<run id>"),
    # With thousands separators (1,234.5); not a part of a version (0.1.0) or an address (127.0.0.1).
    (re.compile(r"(?<![\w.,])\d[\d,]*\.\d+(?![\w.])"), "<n>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
)
TERMINAL_COLUMNS = 80
COMMAND_TIMEOUT_S = 60.0
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z])")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


@dataclasses.dataclass
class Command:
    """A command of the page, and the blocks of output the page shows for it."""

    line: int
    text: str
    #: Each block of output shown: the page line of its first line, and its lines.
    shown: list[tuple[int, list[str]]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SavedFile:
    """A file the page asks the reader to save."""

    name: str
    text: str


@dataclasses.dataclass
class Outcome:
    """What a command did: its exit status and the lines it drew on the terminal."""

    status: int
    stdout: list[str]
    stderr: list[str]


def fenced_blocks(text: str) -> Iterator[tuple[str, int, str, str]]:
    """Yield each fenced block: its language, the line its body starts on, its body, and the text up to the next block."""
    fences = list(_FENCE.finditer(text))
    for index, fence in enumerate(fences):
        after = text[fence.end() : fences[index + 1].start() if index + 1 < len(fences) else len(text)]
        yield fence.group(1), text.count("\n", 0, fence.start(2)) + 1, fence.group(2), after


def read_page(text: str) -> list[Command | SavedFile]:
    """Return the page's steps in order: the commands to run (skips left out), with their output, and the files to save.

    Raises:
        AssertionError: Output shown before any command, or a skip that names nothing on the page.
    """
    headings = [(text.count("\n", 0, match.start()) + 1, match.group(1)) for match in re.finditer(r"^## (.+?)\s*$", text, re.MULTILINE)]
    not_found = set(SKIPPED) | set(SKIPPED_SECTIONS)
    steps: list[Command | SavedFile] = []

    def add(command: str, line: int) -> Command | None:
        """Add the command of page line ``line`` to the steps, unless it is skipped (then return None)."""
        section = next((name for start, name in reversed(headings) if start <= line), "")
        for skip in (command, section):
            if skip in SKIPPED or skip in SKIPPED_SECTIONS:
                not_found.discard(skip)
                return None
        steps.append(Command(line, command))
        return steps[-1]

    for language, first_line, body, after in fenced_blocks(text):
        if language == "sh":
            for line, raw in enumerate(body.splitlines(), first_line):
                command = re.sub(r"\s+# .*$", "", raw).strip()
                if command and not command.startswith("#"):
                    add(command, line)
        elif language == "console":
            # Output before the block's first `$` line is more of the last command's.
            current = next((step for step in reversed(steps) if isinstance(step, Command)), None)
            prompted = False
            block: list[str] | None = None
            for line, raw in enumerate(body.splitlines(), first_line):
                if raw.startswith("$ "):
                    current, prompted, block = add(raw[2:].strip(), line), True, None
                    continue
                assert prompted or current is not None, f"quickstart.md:{line}: output shown before any command"
                if block is None:
                    block = []
                    if current is not None:  # else it is the output of a skipped command
                        current.shown.append((line, block))
                block.append(raw)
        elif language == "yaml":
            saved = re.match(r"\s*Save it as `([^`]+)`", after)
            if saved:
                steps.append(SavedFile(saved.group(1), body))
    assert not not_found, f"SKIPPED or SKIPPED_SECTIONS name what docs/quickstart.md no longer has: {sorted(not_found)}"
    return steps


def screen_lines(raw: bytes) -> list[str]:
    """The lines a terminal shows for ``raw``: no colours, each line as last redrawn, no trailing spaces."""
    text = _ESCAPE.sub("", raw.decode("utf-8", "replace")).replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        drawn = [part for part in line.split("\r") if part.strip()]
        lines.append(drawn[-1].rstrip() if drawn else "")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def normalized(line: str, project: str) -> str:
    """``line`` with its varying parts replaced by placeholders (see the module's docstring)."""
    line = line.rstrip().replace(project, "<project>")
    for pattern, placeholder in PLACEHOLDERS:
        line = pattern.sub(placeholder, line)
    return line


def unmatched(shown: list[str], output: list[str]) -> list[str] | None:
    """Return the first run of shown lines (between ``...`` lines) not found in order in ``output``, or None."""
    runs: list[list[str]] = [[]]
    for line in shown:
        if line == ELLIPSIS:
            runs.append([])
        else:
            runs[-1].append(line)
    position = 0
    for run in filter(None, runs):
        found = next(
            (start for start in range(position, len(output) - len(run) + 1) if output[start : start + len(run)] == run), None
        )
        if found is None:
            return run
        position = found + len(run)
    return None


def run_in_terminal(command: str, cwd: Path, env: dict[str, str], previous_status: int) -> Outcome:
    """Run ``command`` with bash, stdout and stderr each on a pseudo-terminal, ``$?`` set to ``previous_status``."""
    terminals = [pty.openpty() for _ in range(2)]
    for _, child_end in terminals:
        fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, TERMINAL_COLUMNS, 0, 0))
    process = subprocess.Popen(
        ["bash", "-c", f"(exit {previous_status}); {command}"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=terminals[0][1],
        stderr=terminals[1][1],
        start_new_session=True,  # its own process group, so that a hung command is stopped whole
    )
    for _, child_end in terminals:
        os.close(child_end)
    drawn = {our_end: b"" for our_end, _ in terminals}
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        for our_end in drawn:
            selector.register(our_end, selectors.EVENT_READ)
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1.0):
                try:
                    data = os.read(key.fd, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    data = b""
                if data:
                    drawn[key.fd] += data
                else:
                    selector.unregister(key.fd)
        timed_out = bool(selector.get_map())
    if timed_out:
        os.killpg(process.pid, signal.SIGKILL)
    status = process.wait()
    for our_end in drawn:
        os.close(our_end)
    stdout, stderr = (screen_lines(drawn[our_end]) for our_end, _ in terminals)
    if timed_out:
        stderr.append(f"(stopped after {COMMAND_TIMEOUT_S:.0f} s)")
    return Outcome(status, stdout, stderr)


def check(command: Command, outcome: Outcome, project: Path, *, status_shown: bool) -> list[str]:
    """Return what the page gets wrong about ``command``'s output (nothing when it shows what the command does)."""
    where = f"docs/quickstart.md:{command.line}: `{command.text}`"
    problems = []
    everything = outcome.stdout + outcome.stderr
    if any("Traceback (most recent call last)" in line for line in everything):
        problems.append(f"{where} printed a traceback:\n" + "\n".join(everything[-30:]))
    if not status_shown and outcome.status not in (0, 1):
        problems.append(f"{where} exited with {outcome.status}, and the page shows no failure:\n" + "\n".join(everything[-10:]))
    output = [normalized(line, str(project)) for line in everything]
    for line, shown in command.shown:
        missing = unmatched([normalized(text, PAGE_PROJECT) for text in shown], output)
        if missing is None:
            continue
        notes = []
        for text in missing:
            if text not in output:
                close = difflib.get_close_matches(text, output, n=1, cutoff=0.5)
                printed = close[0] if close else "(no line like it; it printed:)\n" + "\n".join(output[-10:])
                notes.append(f"  page:    {text}\n  command: {printed}")
        if not notes:
            notes.append("  each line is there, but not next to each other in this order")
        problems.append(f"{where}: the output shown at line {line} differs:\n" + "\n".join(notes))
    return problems


@pytest.fixture
def project_dir() -> Iterator[Path]:
    """A new directory holding copies of configs/ and data/, and .venv/bin/etl linked to this venv's."""
    etl = Path(sys.executable).parent / "etl"
    assert etl.exists(), f"no {etl}: install the project into this venv (pip install -e .)"
    # A short path, like the page's /home/you/etl: the run summary folds lines at 80 columns.
    directory = Path(os.path.realpath(tempfile.mkdtemp(prefix="qs-", dir="/tmp")))
    try:
        for name in ("configs", "data"):
            shutil.copytree(PROJECT_ROOT / name, directory / name)
        (directory / ".venv" / "bin").mkdir(parents=True)
        (directory / ".venv" / "bin" / "etl").symlink_to(etl)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
def test_the_quickstart_runs_as_written(project_dir):
    steps = read_page(QUICKSTART.read_text(encoding="utf-8"))
    commands = [step for step in steps if isinstance(step, Command)]
    assert any(command.shown for command in commands), "docs/quickstart.md shows no output to compare (console blocks)"
    env = {
        "PATH": f"{project_dir / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": os.environ.get("HOME", str(project_dir)),
        "LANG": "C.UTF-8",
        "PYTHONUTF8": "1",
        "TERM": "xterm-256color",
    }
    # The page shows these commands' exit status: `echo $?` follows them.
    status_shown = {id(command) for command, after in itertools.pairwise(commands) if after.text == "echo $?"}
    problems: list[str] = []
    status = 0
    for step in steps:
        if isinstance(step, SavedFile):
            (project_dir / step.name).write_text(step.text, encoding="utf-8")
            continue
        outcome = run_in_terminal(step.text, project_dir, env, status)
        problems += check(step, outcome, project_dir, status_shown=id(step) in status_shown)
        status = outcome.status
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def test_the_readme_starts_with_the_setup_commands():
    commands = [
        line
        for language, _, body, _ in fenced_blocks(README.read_text(encoding="utf-8"))
        if language == "sh"
        for line in body.splitlines()
        if line.strip()
    ]
    assert commands[:2] == [README_RUN, README_TEST]
    run = README_RUN.rsplit(" && ", 1)[1].removeprefix(".venv/bin/")
    config = run.split()[2]
    assert (PROJECT_ROOT / config).is_file()
    # The same run is the quickstart's first, so the test above runs it.
    quickstart = read_page(QUICKSTART.read_text(encoding="utf-8"))
    assert run in [step.text for step in quickstart if isinstance(step, Command)]


def test_placeholders_hide_timings_and_ids_but_not_counts():
    page = [
        "Finished in 2.5 s, 115.7 records delivered per second",
        "2026-05-04T09:12:31.353039Z [info     ] run_finished  duration_s=0.399 records_ok=284 run_id=65934c0645be4070bac4e57bca17fd0b",
        "report   /home/you/etl/out/report.json",
    ]
    shown = [normalized(line, PAGE_PROJECT) for line in page]
    run = [
        "Finished in 0.2 s, 1,420.0 records delivered per second",
        "2027-01-02T03:04:05.6Z [info     ] run_finished  duration_s=1.5 records_ok=284 run_id=0123456789abcdef0123456789abcdef",
        "report   /tmp/qs-1/out/report.json",
    ]
    assert unmatched(shown, [normalized(line, "/tmp/qs-1") for line in run]) is None
    one_less = [line.replace("records_ok=284", "records_ok=283") for line in run]
    assert unmatched(shown, [normalized(line, "/tmp/qs-1") for line in one_less]) == shown
    assert normalized("etl 0.1.0 on 127.0.0.1:40343", "/x") == "etl 0.1.0 on 127.0.0.1:<port>"


def test_shown_lines_must_be_next_to_each_other_but_where_an_ellipsis_is():
    output = ["a", "b", "c", "d"]
    assert unmatched(["b", "c"], output) is None
    assert unmatched(["a", "c"], output) == ["a", "c"]
    assert unmatched(["a", ELLIPSIS, "c"], output) is None
    assert unmatched(["c", ELLIPSIS, "a"], output) == ["a"]


def test_the_guess_example_is_what_guess_writes(tmp_path):
    page = QUICKSTART.read_text(encoding="utf-8")
    header = re.search(r"For a semicolon-delimited export\s+with a header `([^`]+)`", page)
    shown = next((body for language, _, body, _ in fenced_blocks(page) if language == "yaml" and "guessed by `etl guess`" in body), None)
    assert header and shown, "docs/quickstart.md no longer shows the config `etl guess` writes for a semicolon-delimited export"
    export = semicolons(tmp_path).rename(tmp_path / "export.csv")
    assert export.read_text(encoding="utf-8").splitlines()[0] == header.group(1)

    result = run_etl("guess", "export.csv", "-o", "contacts.yaml", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "contacts.yaml").read_text(encoding="utf-8") == shown
