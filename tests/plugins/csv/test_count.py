"""The csv source's quick count of its records, for the progress bar's total."""

from __future__ import annotations

import pytest

from etl_csv import _count

from .conftest import HEADER, source, write


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (HEADER + "1,a,x\n2,b,y\n", 2),
        (HEADER + "1,a,x\r\n2,b,y\r\n", 2),
        (HEADER + "1,a,x\r2,b,y\r", 2),
        (HEADER + "1,a,x\n2,b,y", 2),  # no line break after the last row
        (HEADER, 0),
    ],
    ids=["lf", "crlf", "cr", "no-final-break", "header-only"],
)
def test_the_count_is_the_records_of_a_plain_file(tmp_path, content, expected):
    path = write(tmp_path, content)
    assert source(path).count(time_limit=10) == expected
    assert source(path).count(time_limit=10) == len(list(source(path).read()))


def test_without_a_header_every_line_is_a_record(tmp_path):
    path = write(tmp_path, "1,a,x\n2,b,y\n")
    assert source(path, header=False, columns=["id", "name", "email"]).count(time_limit=10) == 2


def test_blank_lines_and_line_breaks_in_quotes_count_too_many_never_too_few(tmp_path):
    path = write(tmp_path, HEADER + '1,"two\nlines",x\n\n2,b,y\n')
    assert len(list(source(path).read())) == 2
    assert source(path).count(time_limit=10) == 4


def test_a_crlf_cut_by_the_edge_of_a_block_is_one_line_break(tmp_path, monkeypatch):
    monkeypatch.setattr(_count, "_BLOCK", 4)
    path = write(tmp_path, "id\r\n12\r\n3\r\n")
    assert source(path).count(time_limit=10) == 2  # "id\r\n" | "12\r\n" | "3\r\n"
    monkeypatch.setattr(_count, "_BLOCK", 3)  # "id\r" | "\n12" | "\r\n3" | "\r\n"
    assert source(path).count(time_limit=10) == 2


def test_an_encoding_whose_line_breaks_are_not_single_bytes_is_not_counted(tmp_path):
    path = write(tmp_path, (HEADER + "1,a,x\n").encode("utf-16"))
    assert source(path, encoding="utf-16").count(time_limit=10) is None


def test_a_count_over_its_time_limit_gives_up(tmp_path):
    path = write(tmp_path, HEADER + "1,a,x\n")
    assert source(path).count(time_limit=-1) is None


def test_an_empty_file_holds_no_record(tmp_path):
    assert source(write(tmp_path, "")).count(time_limit=10) == 0


def test_a_missing_file_is_not_counted(tmp_path):
    assert source(tmp_path / "gone.csv").count(time_limit=10) is None
