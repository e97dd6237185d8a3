"""`etl guess` in a subprocess, then `etl validate` and `etl run --sandbox` on the config it wrote.

The input files are the sandbox's sample contacts (`etl_cxone.sample_data`), keeping the
rows the sandbox accepts, written the ways exports come: the seed tutorial's columns in
UTF-8, Latin-1 with accented names, semicolons with awkward headers, UTF-16 with a
byte-order mark and tabs.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from etl_cxone.sample_data import sample_rows
from etl_cxone.sandbox import EMAIL_RE, contact_id
from tests.conftest import run_etl
from tests.e2e.conftest import PROJECT_ROOT, read_report, sandbox_env

#: What `etl validate` needs of the CXONE_* variables: well-formed values (nothing is sent).
VALIDATE_ENV = {
    "CXONE_BASE_URL": "https://api.example.com",
    "CXONE_TOKEN_URL": "https://auth.example.com/token",
    "CXONE_CLIENT_ID": "client",
    "CXONE_CLIENT_SECRET": "s3cret",
}


def valid_rows() -> list[dict[str, str]]:
    """The sample's rows the sandbox accepts: a seeded contact id and a valid email (284 of 300)."""
    return [
        row for i, row in enumerate(sample_rows()) if row["contact_id"] == contact_id(i) and EMAIL_RE.fullmatch(row["email"])
    ]


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, encoding: str, delimiter: str = ",") -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n" if encoding == "utf-16" else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def seed_format(directory: Path) -> Path:
    """(a) The seed tutorial's columns, comma-delimited UTF-8."""
    rows = [[r["contact_id"], r["first_name"], r["last_name"], r["email"]] for r in valid_rows()]
    return write_csv(directory / "seed.csv", ["contactId", "firstName", "lastName", "email"], rows, encoding="utf-8")


def latin_1(directory: Path) -> Path:
    """(b) Latin-1 with accented names (Zoë, Seán, Lucía, Müller...), headers in words."""
    rows = [[r["contact_id"], r["first_name"], r["last_name"], r["email"], r["city"]] for r in valid_rows()]
    header = ["Contact Id", "First Name", "Last Name", "E-mail", "City"]
    return write_csv(directory / "latin1.csv", header, rows, encoding="latin-1")


def semicolons(directory: Path) -> Path:
    """(c) Semicolons, awkward headers, and two email-like columns: EMAIL (every row) and " Email " (a few)."""
    rows = [
        [r["contact_id"], r["email"].upper(), f"other.{n}@example.org" if n % 4 == 0 else "", r["first_name"], r["last_name"],
         r["phone"], "Washington, D.C." if n % 5 == 0 else "n/a"]
        for n, r in enumerate(valid_rows())
    ]
    header = ["Contact ID", "EMAIL", " Email ", "First name", "LAST_NAME", "Phone", "Notes"]
    return write_csv(directory / "semicolons.csv", header, rows, encoding="utf-8", delimiter=";")


def utf_16(directory: Path) -> Path:
    """(d) UTF-16 with a byte-order mark, tab-delimited (a spreadsheet's "Unicode text"), the sample's own columns."""
    names = ["contact_id", "first_name", "last_name", "email", "phone", "city"]
    rows = [[r[name] for name in names] for r in valid_rows()]
    return write_csv(directory / "utf16.csv", names, rows, encoding="utf-16", delimiter="\t")


def guess(directory: Path, csv_path: Path, *args: str) -> Path:
    config = directory / f"{csv_path.stem}.yaml"
    result = run_etl("guess", csv_path.name, "-o", config.name, *args, cwd=directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and f"wrote {config.name}" in result.stderr
    return config


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (seed_format, {"encoding": "utf-8", "delimiter": ",", "from": {"contactId": "contactId", "email": "email"}}),
        (latin_1, {"encoding": "cp1252", "delimiter": ",", "from": {"contactId": "Contact Id", "email": "E-mail"}}),
        (
            semicolons,
            {
                "encoding": "utf-8",
                "delimiter": ";",
                "from": {"contactId": "Contact ID", "email": "EMAIL"},
                # Of the two email columns, the one with more valid values feeds email; the other is named in a comment.
                "comments": [
                    '#   " Email ": also named like email, which "EMAIL" feeds: fewer of its values pass email',
                    '#   "Notes": the cxone sink takes no field of this name',
                ],
            },
        ),
        (utf_16, {"encoding": "utf-16", "delimiter": "\t", "from": {"contactId": "contact_id", "email": "email"}}),
    ],
    ids=["seed-format", "latin-1", "semicolons", "utf-16"],
)
def test_a_guessed_config_validates_and_runs_every_valid_row(tmp_path, make, expected):
    csv_path = make(tmp_path)
    config = guess(tmp_path, csv_path)
    text = config.read_text(encoding="utf-8")
    written = yaml.safe_load(text)
    assert written["source"]["encoding"] == expected["encoding"]
    assert written["source"]["delimiter"] == expected["delimiter"]
    fields = written["transforms"][0]["fields"]
    assert {field: fields[field]["from"] for field in expected["from"]} == expected["from"]
    assert written["sink"]["type"] == "cxone" and written["key"] == "contactId"
    assert all(comment in text for comment in expected.get("comments", ())), text

    checked = run_etl("validate", config.name, cwd=tmp_path, env=VALIDATE_ENV)
    assert checked.returncode == 0, checked.stderr

    result = run_etl("run", config.name, "--sandbox", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = read_report(tmp_path / "out" / csv_path.stem / "sandbox")
    assert report["records"]["rejected"] == 0
    assert report["records"] == {**report["records"], "read": 284, "ok": 284, "failed": 0}


def test_accented_names_reach_the_api_as_written(tmp_path, start_sandbox):
    sandbox = start_sandbox()
    config = guess(tmp_path, latin_1(tmp_path))
    result = run_etl("run", config.name, "--no-progress", cwd=tmp_path, env=sandbox_env(sandbox))
    assert result.returncode == 0, result.stderr
    accented = [row for row in valid_rows() if not (row["first_name"] + row["last_name"]).isascii()]
    assert accented
    for row in accented:
        contact = sandbox.contact(row["contact_id"])
        assert contact is not None
        assert (contact["firstName"], contact["lastName"]) == (row["first_name"], row["last_name"])


def test_the_shipped_sample_is_checked_like_the_shipped_config_checks_it(tmp_path):
    csv_path = tmp_path / "contacts.csv"
    shutil.copyfile(PROJECT_ROOT / "data" / "contacts.csv", csv_path)
    config = guess(tmp_path, csv_path)
    result = run_etl("run", config.name, "--sandbox", "--no-progress", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the sample holds bad rows on purpose
    records = read_report(tmp_path / "out" / "contacts" / "sandbox")["records"]
    # 8 invalid emails and 2 malformed ids rejected; 6 unknown contacts refused by the API.
    assert (records["ok"], records["rejected"], records["failed"]) == (284, 10, 6)


def test_the_shipped_config_does_not_read_the_seed_tutorial_s_columns(tmp_path):
    csv_path = seed_format(tmp_path)
    shipped = str(PROJECT_ROOT / "configs" / "cxone-contacts.yaml")
    result = run_etl("validate", shipped, cwd=tmp_path, env={**VALIDATE_ENV, "CONTACTS_CSV": str(csv_path)})
    assert result.returncode == 2
    assert "the input has no field 'contact_id'" in result.stderr and "did you mean 'contactId'?" in result.stderr


def test_without_o_the_config_goes_to_stdout(tmp_path):
    csv_path = seed_format(tmp_path)
    result = run_etl("guess", csv_path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["pipeline"] == "seed"
    assert result.stderr.startswith("etl guess: utf-8, ',' delimited, a header; 4 of 4 columns sent to the cxone sink")
    assert list(tmp_path.iterdir()) == [csv_path]


def test_o_refuses_to_overwrite_unless_forced(tmp_path):
    csv_path = seed_format(tmp_path)
    config = tmp_path / "seed.yaml"
    config.write_text("mine\n", encoding="utf-8")
    result = run_etl("guess", csv_path.name, "-o", config.name, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "etl: error: seed.yaml: already exists; pass --force to overwrite it\n"
    assert config.read_text(encoding="utf-8") == "mine\n"
    forced = run_etl("guess", csv_path.name, "-o", config.name, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert yaml.safe_load(config.read_text(encoding="utf-8"))["pipeline"] == "seed"
    itself = run_etl("guess", csv_path.name, "-o", csv_path.name, "--force", cwd=tmp_path)
    assert itself.returncode == 2 and "is the CSV file itself" in itself.stderr


@pytest.mark.parametrize(
    ("args", "make_input", "message"),
    [
        (["missing.csv"], None, "etl: error: missing.csv: cannot read it: No such file or directory"),
        (["."], None, "etl: error: .: cannot read it: it is a directory, not a regular file"),
        (["empty.csv"], lambda d: (d / "empty.csv").write_bytes(b""), "etl: error: empty.csv: the file is empty"),
        (["image.csv"], lambda d: (d / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01"),
         "etl: error: image.csv: holds NUL bytes: it does not look like a text (CSV) file"),
        (["seed.csv", "--sink", "nope"], seed_format, "etl: error: unknown sink type 'nope' (installed: cxone, discard, http, jsonl)"),
        (["notes.csv"], lambda d: (d / "notes.csv").write_text("note,text\na,b\n"),
         "etl: error: notes.csv: no column matches a field of the cxone sink"),
    ],
    ids=["missing", "directory", "empty", "binary", "unknown-sink", "nothing-matches"],
)
def test_a_mistake_is_one_line_and_exit_code_2(tmp_path, args, make_input: Callable[[Path], object] | None, message):
    if make_input is not None:
        make_input(tmp_path)
    result = run_etl("guess", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""


def test_a_sink_that_does_not_describe_its_fields_gets_every_column(tmp_path):
    csv_path = utf_16(tmp_path)
    config = guess(tmp_path, csv_path, "--sink", "jsonl")
    records = tmp_path / "records.jsonl"
    result = run_etl("run", config.name, "--no-progress", cwd=tmp_path, env={"JSONL_PATH": str(records)})
    assert result.returncode == 0, result.stderr
    written = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
    # Each column under its own name, trimmed, emails lower-cased, blank cells left out.
    assert written == [{k: v.lower() if k == "email" else v for k, v in row.items() if v} for row in valid_rows()]
