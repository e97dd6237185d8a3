"""Crafted input and config files, through the real `etl` command and the shipped config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from etl_csv import CsvSource
from etl_cxone.sandbox import contact_id
from tests.e2e.conftest import SHIPPED_CONFIG, sandbox_env

from .conftest import run_measured

HEADER = "contact_id,first_name,last_name,email,phone,city\n"
#: The shipped config's variables, pointed at hosts that are never reached.
ENV = {
    "CXONE_BASE_URL": "https://api.example.com",
    "CXONE_TOKEN_URL": "https://auth.example.com/token",
    "CXONE_CLIENT_ID": "client",
    "CXONE_CLIENT_SECRET": "secret",
}


def row(i: int, city: str = "Springfield", email: str | None = None) -> str:
    return f"{contact_id(i)},First{i},Last{i},{email or f'user{i}@example.com'},+1415555{i:04d},{city}\n"


def test_a_row_hidden_in_an_oversized_cell_is_never_sent(tmp_path, start_sandbox):
    # Whoever writes one free-text cell of an export writes a whole row into it, deep
    # enough that the cell goes over max_field_size (the other limits: tests/plugins/test_csv.py).
    sandbox = start_sandbox(seed_count=10)
    forged = row(1, city="Nowhere", email="mallory@evil.example")
    cell = "x" * 1100 + "\n"
    csv_path = tmp_path / "smuggled.csv"
    csv_path.write_text(HEADER + row(0, city='"' + cell * 1000 + forged + 'end"') + row(2), encoding="utf-8")
    target = sandbox.contact(contact_id(1))
    outcome = run_measured("run", str(SHIPPED_CONFIG), cwd=tmp_path, env=sandbox_env(sandbox, csv_path))
    assert outcome.returncode == 1, outcome.stderr
    assert sandbox.stats()["updates"] == {contact_id(2): 1}  # the row after the cell, and nothing else
    assert sandbox.contact(contact_id(1)) == target
    # The rejects file keeps the whole row, its 1 MB cell included: read it as the CSV source would.
    path = tmp_path / "out" / "cxone-contacts" / "rejects.csv"
    rejects = CsvSource(CsvSource.Options(path=str(path), max_field_size=1 << 23)).read()
    reason = "field 6 (city) is longer than 1048576 characters (lines 2-1003)"
    assert [(r.data["_line"], r.data["_reason"]) for r in rejects] == [("2", reason)]


def test_rows_of_a_million_fields_are_rejected_in_little_memory(tmp_path, start_sandbox):
    sandbox = start_sandbox(seed_count=10)
    csv_path = tmp_path / "wide.csv"
    wide = (contact_id(0) + ",a" * 1_000_000 + "\n").encode()  # 2 MB a line
    with csv_path.open("wb") as file:
        file.write(HEADER.encode())
        for _ in range(50):
            file.write(wide)
        file.write(row(2).encode())
    outcome = run_measured("run", str(SHIPPED_CONFIG), cwd=tmp_path, env=sandbox_env(sandbox, csv_path))
    assert outcome.returncode == 1, outcome.stderr
    assert sandbox.stats()["updates"] == {contact_id(2): 1}
    rejects = (tmp_path / "out" / "cxone-contacts" / "rejects.csv").read_text(encoding="utf-8")
    assert rejects.count("record has more than 16384 fields") == 50


def test_rows_wide_in_bytes_are_read_a_few_at_a_time(tmp_path, start_sandbox):
    # 100 rows of 900,000 characters: under every per-row limit, 90 MB in all. Held
    # batch_size (200) rows to a batch, they would all be in memory at once.
    sandbox = start_sandbox(seed_count=100)
    csv_path = tmp_path / "wide.csv"
    with csv_path.open("w", encoding="utf-8") as file:
        file.write(HEADER)
        for i in range(100):
            file.write(row(i, city="x" * 900_000))
        file.write(row(100 - 1, city="Springfield"))
    # Eight sends at once: each holds its row and its request body, whatever the batches.
    outcome = run_measured(
        "run", str(SHIPPED_CONFIG), "--workers", "8", cwd=tmp_path, env=sandbox_env(sandbox, csv_path), timeout=60
    )
    assert "Traceback" not in outcome.output()
    updates = sandbox.stats()["updates"]
    # Every row was read and decided (the shipped config caps a city's length, or sends it).
    report = json.loads((tmp_path / "out" / "cxone-contacts" / "report.json").read_text(encoding="utf-8"))
    assert report["records"]["read"] == 101 and report["records"]["not_processed"] == 0
    assert updates.get(contact_id(99)) is not None


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs a FIFO and /dev/zero")
@pytest.mark.parametrize(
    ("command", "name", "kind"),
    [("validate", "fifo", "a named pipe (FIFO)"), ("run", "/dev/zero", "a character device")],
)
def test_a_pipe_or_device_as_the_input_is_refused(tmp_path, command, name, kind):
    path = tmp_path / name if name == "fifo" else Path(name)
    if name == "fifo":
        os.mkfifo(path)
    outcome = run_measured(command, str(SHIPPED_CONFIG), cwd=tmp_path, env={**ENV, "CONTACTS_CSV": str(path)}, timeout=20)
    assert outcome.returncode == 2
    line = SHIPPED_CONFIG.read_text(encoding="utf-8").splitlines().index("  path: ${CONTACTS_CSV:-data/contacts.csv}") + 1
    assert outcome.stderr == f"etl: error: {SHIPPED_CONFIG}:{line}: source.path: is {kind}, not a regular file\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_pipe_as_the_config_file_is_refused_without_waiting_for_a_writer(tmp_path, command):
    config = tmp_path / "config.yaml"
    os.mkfifo(config)  # nobody ever writes to it: opening it for reading would block forever
    outcome = run_measured(command, str(config), cwd=tmp_path, env=ENV, timeout=20)
    assert outcome.returncode == 2
    assert outcome.stderr == f"etl: error: {config}: cannot read config file: it is a named pipe (FIFO), not a regular file\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  path_template: /api/v2/contacts/{contactId}/../../admin\n",
         "sink.path_template: value error, must not have a '.' or '..' segment"),
        ("  scope: !!int s3cr3t-value\n", "invalid YAML: not a valid !!int value"),
    ],
    ids=["dot-segments", "int-tag"],
)
def test_validate_refuses_a_hostile_config_line(tmp_path, text, message):
    config = tmp_path / "hostile.yaml"
    shipped = SHIPPED_CONFIG.read_text(encoding="utf-8")
    config.write_text(shipped.replace("  method: PATCH\n", "  method: PATCH\n" + text), encoding="utf-8")
    line = config.read_text(encoding="utf-8").splitlines().index(text.rstrip("\n")) + 1
    outcome = run_measured("validate", str(config), cwd=tmp_path, env=ENV)
    assert outcome.returncode == 2
    assert outcome.stderr.startswith(f"etl: error: {config}:{line}: ")
    assert message in outcome.stderr
    assert "s3cr3t" not in outcome.output() and "Traceback" not in outcome.output()


def test_a_100_mb_config_is_refused_unread(tmp_path):
    config = tmp_path / "huge.yaml"
    with config.open("wb") as file:
        file.write(SHIPPED_CONFIG.read_bytes())
        file.truncate(100 << 20)  # the rest reads as NUL bytes, without taking the disk
    outcome = run_measured("validate", str(config), cwd=tmp_path)
    assert outcome.returncode == 2
    assert outcome.stderr == f"etl: error: {config}: config file is larger than 1 MiB (a config is a few kilobytes); refusing to load it\n"
