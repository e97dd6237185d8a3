"""The real `etl` command in a subprocess, on generated CSV files."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pydantic
import pytest

from etl_core import FatalError, PermanentError, PluginOptions, Record, SendResult, Sink, hookimpl
from etl_core.cli import main
from etl_cxone.sandbox import contact_id
from tests.conftest import ETL, pipeline_config, run_etl


def write_csv(path: Path, rows: int, *, bad_email_every: int = 0) -> list[dict[str, str]]:
    written = []
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "email", "name"])
        for i in range(rows):
            email = f"User{i}@Example.com" if not bad_email_every or i % bad_email_every else f"user{i}-at-example"
            row = [str(uuid.UUID(int=i + 1)), email, f" Name {i} "]
            writer.writerow(row)
            written.append(dict(zip(["id", "email", "name"], row, strict=False)))
    return written


def config(
    tmp_path: Path, csv_path: Path, *, sink: str = "jsonl", extra: str = "", out: Path | None = None, records: Path | None = None
) -> Path:
    """A pipeline keyed on contactId: ``csv_path`` -> map -> validate -> ``sink``.

    ``out`` is ``output.dir`` (default ``tmp_path/out``); ``records`` is the jsonl sink's
    file (default ``records.jsonl`` there).
    """
    out = out or tmp_path / "out"
    text = pipeline_config(
        name="e2e",
        csv=csv_path,
        out=out,
        fields={
            "contactId": "{from: id, normalize: [strip]}",
            "email": "{from: email, normalize: [strip, lower]}",
            "name": "{from: name, normalize: [strip]}",
        },
        sink=sink,
        sink_options={"path": json.dumps(str(records or out / "records.jsonl"))} if sink == "jsonl" else {},
        workers=4,
        extra=extra,
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_version(tmp_path):
    out = run_etl("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("etl ")


def test_csv_to_jsonl_end_to_end(tmp_path):
    rows = write_csv(tmp_path / "in.csv", 500, bad_email_every=50)
    result = run_etl("run", str(config(tmp_path, tmp_path / "in.csv")), cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # 10 invalid emails
    assert "Traceback" not in result.stderr + result.stdout
    written = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert len(written) == 490
    by_id = {r["contactId"]: r for r in written}
    assert by_id[rows[1]["id"]] == {"contactId": rows[1]["id"], "email": "user1@example.com", "name": "Name 1"}
    with open(tmp_path / "out" / "rejects.csv", newline="") as f:
        rejects = list(csv.DictReader(f))
    assert len(rejects) == 10
    assert rejects[0]["_line"] == "2" and rejects[0]["_stage"] == "transform" and rejects[0]["_plugin"] == "validate"
    assert "email" in rejects[0]["_reason"] and rejects[0]["email"] == "user0-at-example"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["records"] == {"read": 500, "ok": 490, "rejected": 10, "failed": 0, "skipped": 0, "not_processed": 0}
    assert report["exit_code"] == 1


def test_json_logs_have_the_standard_fields(tmp_path):
    write_csv(tmp_path / "in.csv", 20)
    result = run_etl("run", str(config(tmp_path, tmp_path / "in.csv")), "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    assert events, "no log lines"
    run_ids = {e["run_id"] for e in events}
    assert len(run_ids) == 1
    for event in events:
        assert {"timestamp", "level", "event", "run_id", "pipeline"} <= event.keys()
        assert event["timestamp"].endswith("Z") and "T" in event["timestamp"]
        assert event["pipeline"] == "e2e"
    summary = events[-1]
    assert summary["event"] == "run_finished"
    assert summary["records_ok"] == 20 and summary["exit_code"] == 0


def test_workers_override_and_log_level(tmp_path):
    write_csv(tmp_path / "in.csv", 5)
    path = config(tmp_path, tmp_path / "in.csv")
    result = run_etl("run", str(path), "--workers", "3", "--log-format", "json", "--log-level", "debug", cwd=tmp_path)
    started = next(e for e in json_lines(result.stdout) if e["event"] == "run_started")
    assert started["workers"] == 3
    quiet = run_etl("run", str(path), "--log-format", "json", "--log-level", "warning", cwd=tmp_path)
    assert quiet.stdout.strip() == ""


@pytest.mark.parametrize("value", ["0", "5000", "many", "1.5"])
def test_workers_out_of_range_is_a_usage_error(tmp_path, value):
    write_csv(tmp_path / "in.csv", 5)
    result = run_etl("run", str(config(tmp_path, tmp_path / "in.csv")), "--workers", value, cwd=tmp_path)
    assert result.returncode == 2
    assert f"argument --workers: {value!r} is not auto or a whole number from 1 to 4096" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_workers_auto_on_the_command_line(tmp_path):
    write_csv(tmp_path / "in.csv", 5)
    path = config(tmp_path, tmp_path / "in.csv")  # run.workers: 4
    result = run_etl("run", str(path), "--workers", "auto", "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    started = next(e for e in json_lines(result.stdout) if e["event"] == "run_started")
    assert started["workers"] == "auto"


def test_dry_run_sends_nothing(tmp_path):
    write_csv(tmp_path / "in.csv", 30, bad_email_every=10)
    result = run_etl("run", str(config(tmp_path, tmp_path / "in.csv")), "--dry-run", "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 1
    assert not (tmp_path / "out" / "records.jsonl").exists()
    events = json_lines(result.stdout)
    assert sum(e["event"] == "dry_run_request" for e in events) == 5  # the first few are shown
    report = json.loads((tmp_path / "out" / "dry-run" / "report.json").read_text())
    assert report["dry_run"] is True and report["records"]["rejected"] == 3
    assert not (tmp_path / "out" / "report.json").exists(), "a dry run keeps apart from real runs"


def test_validate_reads_nothing(tmp_path):
    write_csv(tmp_path / "in.csv", 3)
    result = run_etl("validate", str(config(tmp_path, tmp_path / "in.csv")), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t.replace("workers: 4", "workers: [4"), ":1?\\d*: invalid YAML"),
        (lambda t: t.replace("workers: 4", "workerz: 4"), "run.workerz: unknown key"),
        (lambda t: t.replace("workers: 4", "workers: lots"), "run.workers: input should be a valid integer"),
        (lambda t: t.replace("type: jsonl", "type: kafka"), "sink.type: unknown sink type 'kafka'"),
        (lambda t: t.replace("normalize: [strip]}", "normalize: [strip, shout]}", 1), "transforms[0].fields.contactId"),
        (lambda t: t.replace("drop_empty: true", "drop_empty: ${DROP_EMPTY}"), "DROP_EMPTY is not set"),
        (lambda t: t.replace("  path: ", "  paht: ", 1), "source.paht: unknown key"),
    ],
    ids=["bad-yaml", "unknown-key", "wrong-type", "unknown-plugin", "bad-normaliser", "unset-variable", "typo-in-plugin"],
)
def test_config_errors_exit_2_with_key_and_line(tmp_path, mutate, expected):
    import re

    write_csv(tmp_path / "in.csv", 3)
    path = config(tmp_path, tmp_path / "in.csv")
    path.write_text(mutate(path.read_text()))
    for command in ("validate", "run"):
        result = run_etl(command, str(path), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith(f"etl: error: {path}:")
        assert re.search(re.escape(expected) if not expected.startswith(":") else expected, result.stderr), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists(), "nothing may be read or written on a config error"


def test_missing_input_file_is_a_config_error(tmp_path):
    result = run_etl("run", str(config(tmp_path, tmp_path / "missing.csv")), cwd=tmp_path)
    assert result.returncode == 2
    assert "source.path" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "reason", "line"),
    [
        (b"id,email,name\n00000000-0000-0000-0000-000000000001,a@b.co,x,EXTRA\n", "expected 3 fields", "2"),
        (b"id,email,name\n00000000-0000-0000-0000-000000000001,a@b.co\n", "expected 3 fields", "2"),
        (b'id,email,name\n"00000000-0000-0000-0000-000000000001","a@b.co","multi\nline"\n00000000-0000-0000-0000-00000000000X,a@b.co,y\n', "UUID", "4"),
        # One damaged row in more than a hundred: rejected (more would be another encoding).
        (
            b"id,email,name\n"
            + b"".join(b"00000000-0000-0000-0000-%012d,a@b.co,n\n" % i for i in range(1, 151))
            + b"00000000-0000-0000-0000-000000000999,a@b.co,\xff\xfe\n",
            "utf-8",
            "152",
        ),
    ],
    ids=["too-many-fields", "too-few-fields", "quoted-newline-keeps-line-numbers", "undecodable"],
)
def test_malformed_csv_rows_are_rejected_not_fatal(tmp_path, content, reason, line):
    (tmp_path / "in.csv").write_bytes(content)
    result = run_etl("run", str(config(tmp_path, tmp_path / "in.csv")), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    with open(tmp_path / "out" / "rejects.csv", newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert reason in row["_reason"] and row["_line"] == line


def write_bytes(path: Path, text: str, encoding: str) -> Path:
    path.write_bytes(text.encode(encoding))
    return path


SEED_HEADER = "id,email,name\n"
ROWS = "".join(f"00000000-0000-0000-0000-{i:012d},user{i}@example.com,Jérôme {i}\n" for i in range(1, 40))


@pytest.mark.parametrize(
    ("content", "encoding", "key", "expected"),
    [
        (SEED_HEADER.replace("id,", "ID,").replace("name", "Name") + ROWS, "utf-8", "transforms[0].fields.contactId.from",
         "the input has no field 'id'; it has 'ID', 'email', 'Name': did you mean 'ID'?"),
        (SEED_HEADER.replace(",", ";") + ROWS.replace(",", ";"), "utf-8", "transforms[0].fields.contactId.from",
         "the header is one field: the file looks delimited by ';', see source.delimiter"),
        (SEED_HEADER + ROWS, "cp1252", "source.encoding", "it looks like cp1252: set source.encoding: cp1252"),
        (SEED_HEADER + ROWS, "utf-16", "source.encoding", "UTF-16 byte-order mark: set source.encoding: utf-16"),
    ],
    ids=["other-case", "semicolons", "cp1252", "utf-16"],
)
def test_an_input_that_does_not_fit_the_config_is_a_config_error_before_anything_is_sent(
    tmp_path, content, encoding, key, expected
):
    csv_path = write_bytes(tmp_path / "in.csv", content, encoding)
    records = tmp_path / "records.jsonl"
    path = config(tmp_path, csv_path, records=records)
    for command in ("validate", "run"):
        result = run_etl(command, str(path), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        [message] = result.stderr.strip().splitlines()
        assert message.startswith(f"etl: error: {path}:") and f": {key}: " in message and expected in message, message
    assert not records.exists() and not (tmp_path / "out").exists(), "nothing may be sent or written"


def test_bom_and_crlf(tmp_path):
    (tmp_path / "in.csv").write_bytes(
        b"\xef\xbb\xbfid,email,name\r\n00000000-0000-0000-0000-000000000001,A@B.co,x\r\n"
    )
    result = run_etl("run", str(config(tmp_path, tmp_path / "in.csv")), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(x) for x in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert record == {"contactId": "00000000-0000-0000-0000-000000000001", "email": "a@b.co", "name": "x"}


def test_plugins_lists_builtins(tmp_path):
    result = run_etl("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0
    kinds = {(row["kind"], row["name"]) for row in json.loads(result.stdout)}
    assert {("source", "csv"), ("transform", "map"), ("transform", "validate"), ("sink", "jsonl"), ("sink", "discard"), ("sink", "cxone")} <= kinds
    table = run_etl("plugins", cwd=tmp_path)
    assert "KIND" in table.stdout and "csv" in table.stdout


def test_schema_covers_plugins(tmp_path):
    result = run_etl("schema", cwd=tmp_path)
    schema = json.loads(result.stdout)
    sinks = {choice["properties"]["type"]["const"] for choice in schema["properties"]["sink"]["oneOf"]}
    assert {"jsonl", "discard", "cxone"} <= sinks


def test_sandbox_help_lists_the_installed_sandboxes(tmp_path):
    listed = run_etl("sandbox", "--help", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^installed sandboxes:\n  NAME\n    cxone ", listed.stdout, re.MULTILINE), listed.stdout
    bare = run_etl("sandbox", cwd=tmp_path)
    assert bare.returncode == 2
    assert bare.stderr.startswith("usage: etl sandbox ") and "cxone" in bare.stderr


def test_sandbox_cxone_help_shows_its_options(tmp_path):
    shown = run_etl("sandbox", "cxone", "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: etl sandbox cxone ")
    for option in ("--port", "--client-secret", "--rate-limit", "--retry-after", "--latency", "--error-rate"):
        assert option in shown.stdout


def test_sandbox_cxone_bad_option_is_a_usage_error(tmp_path):
    refused = run_etl("sandbox", "cxone", "--rate-limit", "-5", cwd=tmp_path)
    assert refused.returncode == 2
    assert "etl sandbox cxone: error: argument --rate-limit" in refused.stderr and "Traceback" not in refused.stderr


def test_sandbox_cxone_serves_until_terminated(tmp_path):
    command = [*ETL, "sandbox", "cxone", "--port", "0", "--seed-count", "3"]
    command += ["--client-id", "demo-client", "--client-secret", "demo-secret-42"]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first_line = process.stdout.readline()  # "" if it exits without serving
        listening = re.match(r"CXone sandbox listening on (http://127\.0\.0\.1:\d+) client_id=demo-client ", first_line)
        assert listening, first_line
        url = listening.group(1)
        with httpx.Client(base_url=url, timeout=10) as client:
            form = {"grant_type": "client_credentials", "scope": "contact:write"}
            assert client.post("/oauth/token", data=form, auth=("sandbox-client", "sandbox-secret")).status_code == 401
            issued = client.post("/oauth/token", data=form, auth=("demo-client", "demo-secret-42"))
            assert issued.status_code == 200, issued.text
            bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
            assert client.get(f"/api/v2/contacts/{contact_id(2)}", headers=bearer).status_code == 200
            assert client.get(f"/api/v2/contacts/{contact_id(3)}", headers=bearer).status_code == 404  # 3 seeded
        process.terminate()
        assert process.wait(timeout=30) == 0  # SIGTERM is the normal way to stop it
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def _peak_rss_mb(tmp_path: Path, rows: int) -> float:
    csv_path = tmp_path / f"in-{rows}.csv"
    with open(csv_path, "w", encoding="utf-8") as f:
        f.write("id,email,name\n")
        f.writelines(f"{uuid.UUID(int=i + 1)},user{i}@example.com,Name {i}\n" for i in range(rows))
    path = config(tmp_path, csv_path, sink="discard")
    code = (
        "import resource, subprocess, sys;"
        f"r = subprocess.run({[*ETL, 'run', str(path), '--log-level', 'warning']!r}, capture_output=True);"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    returncode, rss_kb = out.stdout.split()
    assert returncode == "0", out.stderr
    return int(rss_kb) / 1024


@pytest.mark.slow
def test_memory_stays_flat_as_input_grows(tmp_path):
    small = _peak_rss_mb(tmp_path, 4_000)
    large = _peak_rss_mb(tmp_path, 40_000)
    assert large < 150
    assert large <= small * 1.15, (small, large)


# -- outputs that fail: a full disk, a damaged or read-only state file --------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, mounted for the test (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("needs the mount command")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb", buffering=0) as file, pytest.raises(OSError) as full:
        while True:
            file.write(bytes(4096))
    assert full.value.errno == errno.ENOSPC


def test_a_full_disk_for_the_report_is_a_clear_error(tmp_path, tiny_disk):
    write_csv(tmp_path / "in.csv", 5)
    records = tmp_path / "records.jsonl"
    state = json.dumps(str(tmp_path / "state.db"))
    path = config(tmp_path, tmp_path / "in.csv", out=tiny_disk, records=records, extra=f"state:\n  path: {state}\n")
    fill(tiny_disk)
    result = run_etl("run", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"etl: error: the report could not be written to {tiny_disk}/report.json: No space left on device\n"
    # No report.json.tmp left behind (run.lock, the run's lease, stays by design).
    assert sorted(os.listdir(tiny_disk)) == ["filler", "run.lock"]
    assert len(records.read_text().splitlines()) == 5  # the run itself went through


def damage(state: Path) -> None:
    """Overwrite the second half of the database's pages (its header and schema stay readable)."""
    data = bytearray(state.read_bytes())
    pages = len(data) // 4096
    assert pages >= 8, pages
    data[4096 * (pages // 2) :] = b"\xa5" * (len(data) - 4096 * (pages // 2))
    state.write_bytes(bytes(data))


@pytest.fixture
def damaged_state(tmp_path: Path) -> tuple[Path, Path]:
    """A pipeline whose state file a first run filled, then damaged; its config and state file."""
    write_csv(tmp_path / "in.csv", 300)
    path = config(tmp_path, tmp_path / "in.csv")
    assert run_etl("run", str(path), cwd=tmp_path).returncode == 0
    state = tmp_path / "out" / "state.db"
    damage(state)
    (tmp_path / "out" / "records.jsonl").unlink()
    return path, state


_DAMAGED = "database disk image is malformed; it is damaged or not a state file: move it away to start afresh (every record is then sent again)"


def test_fresh_on_a_damaged_state_file_is_a_config_error_naming_it(tmp_path, damaged_state):
    path, state = damaged_state
    result = run_etl("run", str(path), "--fresh", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"etl: error: state.path: the state file {state} cannot be written: {_DAMAGED}\n"
    assert not (tmp_path / "out" / "records.jsonl").exists()


def test_a_damaged_page_met_mid_run_stops_it_naming_the_file(tmp_path, damaged_state):
    path, state = damaged_state
    result = run_etl("run", str(path), "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 1
    message = f"the state file {state} cannot be read: {_DAMAGED}"
    assert result.stderr == f"etl: error: run stopped: {message}\n"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["aborted"] == message
    assert "Traceback" not in result.stdout


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], None]]:
    """Make files read-only, even to root (``chattr +i``: skipped where that is not possible)."""
    immutable: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o444)
            return
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False).returncode:
            pytest.skip("cannot make a file read-only to root here (chattr +i)")
        immutable.append(path)

    yield make
    for path in immutable:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("flags", [["--fresh"], []], ids=["fresh", "resume"])
def test_a_read_only_state_file_is_a_config_error_before_anything_is_sent(tmp_path, make_read_only, flags):
    write_csv(tmp_path / "in.csv", 5)
    path = config(tmp_path, tmp_path / "in.csv")
    assert run_etl("run", str(path), cwd=tmp_path).returncode == 0
    (tmp_path / "out" / "records.jsonl").unlink()
    state = tmp_path / "out" / "state.db"
    make_read_only(state)
    write_csv(tmp_path / "in.csv", 6)  # one record more to send
    result = run_etl("run", str(path), *flags, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"etl: error: state.path: the state file {state} cannot be written: attempt to write a readonly database; "
        "check that the file and its directory are writable\n"
    )
    assert not (tmp_path / "out" / "records.jsonl").exists()


# -- what reaches a spreadsheet or stderr --------------------------------------------------


def test_a_formula_in_the_input_header_is_escaped_in_the_rejects_file(tmp_path):
    formula = '=HYPERLINK("https://evil.example","open")'
    header = 'id,email,name,"=HYPERLINK(""https://evil.example"",""open"")"'
    (tmp_path / "in.csv").write_text(f"{header}\n{uuid.UUID(int=1)},not-an-email,x,=1+1\n", encoding="utf-8")
    result = run_etl("run", str(config(tmp_path, tmp_path / "in.csv")), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    with open(tmp_path / "out" / "rejects.csv", newline="", encoding="utf-8") as file:
        header_row, row = list(csv.reader(file))
    assert header_row[-2:] == ["'" + formula, "_other_fields"]
    assert row[-2] == "'=1+1"


LEAKED_KEY = "leaky-key-93c1f0"


class LeakySink(Sink):
    """Quotes its api_key in what it raises, as a careless plugin might."""

    name = "leaky"

    class Options(PluginOptions):
        api_key: pydantic.SecretStr

    async def send(self, record: Record) -> SendResult:
        key = self.options.api_key.get_secret_value()
        if record.line == 2:
            raise PermanentError(f"refused with {key}", status=403, detail=f"key {key} is not allowed")
        raise FatalError(f"the service refused the key {key}")


class LeakyPlugin:
    @hookimpl
    def register_sinks(self):
        return [LeakySink]


def test_a_registered_secret_quoted_by_a_plugin_is_masked_in_every_output(tmp_path, capsys, monkeypatch):
    write_csv(tmp_path / "in.csv", 3)
    text = config(tmp_path, tmp_path / "in.csv").read_text()
    sink = 'type: jsonl\n  path: "' + str(tmp_path / "out" / "records.jsonl") + '"'
    assert sink in text
    path = tmp_path / "leaky.yaml"
    path.write_text(text.replace(sink, "type: leaky\n  api_key: ${LEAKY_KEY}").replace("workers: 4", "workers: 1"))
    monkeypatch.setenv("LEAKY_KEY", LEAKED_KEY)
    code = main(["run", str(path), "--log-format", "json"], extra_plugins=(LeakyPlugin(),))
    out, err = capsys.readouterr()
    assert code == 1
    assert err == "etl: error: run stopped: the service refused the key ***\n"
    report = (tmp_path / "out" / "report.json").read_text()
    assert json.loads(report)["aborted"] == "the service refused the key ***"
    rejects = (tmp_path / "out" / "rejects.csv").read_text()
    assert "refused with ***" in rejects and "key *** is not allowed" in rejects
    with sqlite3.connect(tmp_path / "out" / "state.db") as db:
        assert db.execute("SELECT error FROM records").fetchall() == [("refused with ***",)]
    for written in (out, err, report, rejects):
        assert LEAKED_KEY not in written
