import csv
import json

import pytest

from etl_core import FatalError
from etl_core.logging import register_secret
from etl_core.report import CsvFile, RejectsWriter, spreadsheet_safe, success_file, write_report


@pytest.mark.parametrize("value", ["=SUM(A1)", "+1", "-2", "@cmd", "\tx", "\rx"])
def test_formula_cells_neutralised(value):
    assert spreadsheet_safe(value) == "'" + value


@pytest.mark.parametrize("value", ["plain", "", "1+1", "a=b"])
def test_other_cells_untouched(value):
    assert spreadsheet_safe(value) == value


def test_rejects_file_columns_and_extra_fields(tmp_path):
    writer = RejectsWriter(str(tmp_path / "r.csv"))
    writer.write(line=2, key="k1", stage="transform", plugin="validate", reason="email: bad", raw={"id": "k1", "email": "=HYPERLINK()"})
    writer.write(line=5, key=None, stage="source", plugin="csv", reason="expected 2 fields", raw={"id": "x", "_extra_1": "y"})
    writer.close()
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["_line"] == "2" and rows[0]["email"] == "'=HYPERLINK()" and rows[0]["_retryable"] == "no"
    assert json.loads(rows[1]["_other_fields"]) == {"_extra_1": "y"}
    assert writer.count == 2


def test_no_rejects_no_file(tmp_path):
    writer = RejectsWriter(str(tmp_path / "r.csv"))
    writer.close()
    assert not (tmp_path / "r.csv").exists()


def test_success_file(tmp_path):
    writer = success_file(str(tmp_path / "s.csv"))
    writer.write(("-k", 3, 200, 1))
    writer.close()
    assert (tmp_path / "s.csv").read_text().splitlines() == ["key,line,status,attempts", "'-k,3,200,1"]


def test_csv_file_is_created_on_its_first_row_with_a_safe_header(tmp_path):
    path = tmp_path / "sub" / "f.csv"
    writer = CsvFile(str(path), lambda: ["=HYPERLINK(1)", "b"], flush_rows=True)
    assert not path.exists()
    writer.write(["+1", "x"])
    # Flushed per row: complete on disk before the file is closed.
    assert path.read_text().splitlines() == ["'=HYPERLINK(1),b", "'+1,x"]
    writer.close()
    assert writer.count == 1


def test_report_written_atomically(tmp_path):
    write_report(str(tmp_path / "x" / "report.json"), {"a": 1})
    assert json.loads((tmp_path / "x" / "report.json").read_text()) == {"a": 1}
    assert not (tmp_path / "x" / "report.json.tmp").exists()


def test_rejects_columns_come_from_the_source_when_known(tmp_path):
    writer = RejectsWriter(str(tmp_path / "r.csv"), columns=lambda: ["id", "email"])
    writer.write(line=2, key=None, stage="source", plugin="csv", reason="not valid utf-8", raw={})
    writer.write(line=3, key="k", stage="transform", plugin="validate", reason="email: bad", raw={"id": "k", "email": "x"})
    writer.close()
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["id"] == "k" and rows[1]["email"] == "x" and rows[1]["_other_fields"] == ""


# -- secrets, planted links and failures -------------------------------------------------------

SECRET = "report-secret-8d2e4f"
PRECIOUS = "precious: must never be overwritten\n"


def test_registered_secrets_are_masked_in_every_cell_and_the_report(tmp_path):
    register_secret(SECRET)
    writer = CsvFile(str(tmp_path / "f.csv"), [f"column {SECRET}"])
    writer.write([f"=refused with {SECRET}", 3])
    writer.close()
    assert (tmp_path / "f.csv").read_text().splitlines() == ["column ***", "'=refused with ***,3"]
    write_report(str(tmp_path / "report.json"), {"aborted": f"the key {SECRET}", "files": {"rejects": None}})
    assert json.loads((tmp_path / "report.json").read_text()) == {"aborted": "the key ***", "files": {"rejects": None}}


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_text(PRECIOUS)
    return path


def test_a_csv_file_replaces_a_planted_link_without_writing_through_it(tmp_path, victim):
    path = tmp_path / "f.csv"
    path.symlink_to(victim)
    writer = CsvFile(str(path), ["a"])
    assert not path.exists() and not path.is_symlink()  # a leftover is removed when the file is made
    path.symlink_to(victim)  # planted again before the first row
    writer.write(["x"])
    writer.close()
    assert victim.read_text() == PRECIOUS
    assert not path.is_symlink() and path.read_text().splitlines() == ["a", "x"]


def test_the_report_replaces_a_planted_temporary_link(tmp_path, victim):
    (tmp_path / "report.json.tmp").symlink_to(victim)
    write_report(str(tmp_path / "report.json"), {"a": 1})
    assert victim.read_text() == PRECIOUS
    assert json.loads((tmp_path / "report.json").read_text()) == {"a": 1}
    assert not (tmp_path / "report.json.tmp").exists()


def test_a_report_that_cannot_be_written_leaves_no_temporary_file(tmp_path):
    (tmp_path / "report.json").mkdir()  # the rename fails
    with pytest.raises(OSError):
        write_report(str(tmp_path / "report.json"), {"a": 1})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.json"]


def test_a_csv_file_that_cannot_be_written_is_a_fatal_error_naming_it(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(FatalError) as caught:
        CsvFile(str(tmp_path / "not-a-dir" / "f.csv"), ["a"]).write(["x"])
    assert str(caught.value).startswith(f"cannot write {tmp_path / 'not-a-dir' / 'f.csv'}: ")
