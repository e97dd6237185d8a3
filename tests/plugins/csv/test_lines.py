"""Tests of the csv source's lines: line breaks, decoding line by line, the size limits, block boundaries."""

from __future__ import annotations

import tracemalloc
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl_core import EtlError, FatalError
from etl_csv import _lines

from .conftest import read, source, summary, write

# -- line breaks and decoding -------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings(tmp_path, newline):
    text = newline.join(["a,b", "1,2", "3,4", ""])
    assert summary(read(tmp_path, text)) == [(2, {"a": "1", "b": "2"}), (3, {"a": "3", "b": "4"})]


def test_mixed_line_endings(tmp_path):
    records = read(tmp_path, "a,b\r\n1,2\n3,4\r5,6\r\n")
    assert [r.line for r in records] == [2, 3, 4]


def test_undecodable_bytes_reject_only_their_row(tmp_path):
    content = b"a,b\n1,ok\n2,caf\xe9\n3,\"multi\nline \xff\"\n4,ok\n"
    records = read(tmp_path, content)
    assert summary(records) == [
        (2, {"a": "1", "b": "ok"}),
        (3, "not valid utf-8 at byte 6 of line 3 (0xe9)"),
        (4, "not valid utf-8 at byte 6 of line 5 (0xff) (lines 4-5)"),
        (6, {"a": "4", "b": "ok"}),
    ]
    assert records[1].raw == {"a": "2", "b": "caf\ufffd"}


def test_cp1252_undefined_byte_rejects_its_row(tmp_path):
    content = b"a,b\n1,\x80uro\n2,\x81\n3,ok\n"
    records = read(tmp_path, content, encoding="cp1252")
    assert summary(records) == [
        (2, {"a": "1", "b": "€uro"}),
        (3, "not valid cp1252 at byte 3 of line 3 (0x81)"),
        (4, {"a": "3", "b": "ok"}),
    ]


def test_nul_character_rejects_the_row(tmp_path):
    records = read(tmp_path, b"a,b\n1,x\x00y\n2,ok\n")
    assert summary(records) == [(2, "NUL character on line 2"), (3, {"a": "2", "b": "ok"})]
    assert records[0].raw == {"a": "1", "b": "x\x00y"}


# -- limits -------------------------------------------------------------------------------


def test_oversized_line_is_rejected_and_reading_continues(tmp_path):
    text = "a,b\n1," + "x" * 30 + "\n2,ok\n3," + "y" * 8 + "\n4," + "z" * 40
    records = read(tmp_path, text, max_line_length=10)
    assert summary(records) == [
        (2, "line 2 is longer than 10 characters"),
        (3, {"a": "2", "b": "ok"}),
        (4, {"a": "3", "b": "y" * 8}),
        (5, "line 5 is longer than 10 characters"),
    ]


def test_oversized_multiline_record_is_rejected_whole(tmp_path):
    text = 'a,b\n1,"' + "x\n" * 20 + 'end"\n2,ok\n'
    records = read(tmp_path, text, max_line_length=15)
    # Over the limit at line 8, inside the quoted field: the rest of the field, up to its
    # closing quote on line 22, belongs to the rejected record.
    assert summary(records) == [(2, "record is longer than 15 characters (lines 2-22)"), (23, {"a": "2", "b": "ok"})]


def test_multibyte_line_within_character_limit_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(_lines, "BLOCK_SIZE", 4)
    line = "é" * 8 + ",x"  # 10 characters, 18 bytes
    records = read(tmp_path, "a,b\n" + line + "\n1,2\n", max_line_length=10)
    assert summary(records) == [(2, {"a": "é" * 8, "b": "x"}), (3, {"a": "1", "b": "2"})]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_oversized_line_across_many_blocks(tmp_path, monkeypatch, newline):
    monkeypatch.setattr(_lines, "BLOCK_SIZE", 7)
    text = newline.join(["a,b", "1," + "x" * 100, "2,ok", "3," + "y" * 100, "4,ok", ""])
    records = read(tmp_path, text, max_line_length=20)
    assert summary(records) == [
        (2, "line 2 is longer than 20 characters"),
        (3, {"a": "2", "b": "ok"}),
        (4, "line 4 is longer than 20 characters"),
        (5, {"a": "4", "b": "ok"}),
    ]


def test_huge_single_line_is_never_held_in_memory(tmp_path):
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:
        f.write(b"a,b\n")
        for _ in range(160):  # 40 MiB on one line
            f.write(b"x" * (1 << 18))
        f.write(b"\n1,2\n")
    tracemalloc.start()
    try:
        records = list(source(path, max_line_length=1 << 20).read())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary(records) == [(2, "line 2 is longer than 1048576 characters"), (3, {"a": "1", "b": "2"})]
    assert peak < 8 * (1 << 20)


def test_a_row_with_many_fields_is_rejected_before_they_are_built(tmp_path):
    path = tmp_path / "wide.csv"
    row = b"," * 1_000_000 + b"\n"  # a million empty fields in 1 MB
    path.write_bytes(b"a,b\n" + row * 10 + b"1,2\n")
    tracemalloc.start()
    try:
        records = list(source(path).read())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary(records) == [
        *[(line, "record has more than 16384 fields") for line in range(2, 12)],
        (12, {"a": "1", "b": "2"}),
    ]
    assert peak < 12 * (1 << 20)  # the parser would build a list of a million strings


def test_delimiters_inside_quotes_are_not_fields(tmp_path):
    text = 'a,b\n1,"2,3,4,5"\n2,"x\n3,4,5,6"\n3,"x\n4",5,6\n'
    assert summary(read(tmp_path, text, max_fields=3)) == [
        (2, {"a": "1", "b": "2,3,4,5"}),
        (3, {"a": "2", "b": "x\n3,4,5,6"}),
        (5, "record has more than 3 fields (lines 5-6)"),
    ]


def test_a_header_with_too_many_columns_is_fatal(tmp_path):
    with pytest.raises(FatalError, match="cannot read the header on line 1: record has more than 2 fields"):
        read(tmp_path, "a,b,c\n1,2,3\n", max_fields=2)


# -- no row is ever read out of a quoted field --------------------------------------------


FORGED = "3,forged"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("block", [5, 1 << 16])
@pytest.mark.parametrize(
    ("options", "row", "reason"),
    [
        ({"max_field_size": 40}, "1,", "field 2 (b) is longer than 40 characters"),
        ({"max_line_length": 40}, "1,", "record is longer than 40 characters"),
        ({"max_fields": 3}, "1,2,3,", "record has more than 3 fields"),
    ],
)
def test_a_limit_hit_inside_a_quoted_field_rejects_the_whole_field(
    tmp_path, monkeypatch, newline, block, options, row, reason
):
    # A row whose quoted cell hides a whole row among many lines: the reader must not
    # resume inside the cell when the cell (or its record) goes over a limit.
    monkeypatch.setattr(_lines, "BLOCK_SIZE", block)
    cell = newline.join(["x,x,x"] * 12 + [FORGED, "end"])
    text = newline.join(["a,b", f'{row}"{cell}"', "2,ok", ""])
    assert summary(read(tmp_path, text, **options)) == [(2, reason + " (lines 2-15)"), (16, {"a": "2", "b": "ok"})]


@pytest.mark.parametrize("block", [3, 1 << 16])
def test_an_overlong_line_that_opens_a_quoted_field(tmp_path, monkeypatch, block):
    # The line is skipped without being held, but its quotes are followed as it passes.
    monkeypatch.setattr(_lines, "BLOCK_SIZE", block)
    text = 'a,b\n1,"' + "y" * 50 + "\n" + FORGED + '\nend"\n2,ok\n'
    records = read(tmp_path, text, max_line_length=20)
    assert summary(records) == [(2, "line 2 is longer than 20 characters (lines 2-4)"), (5, {"a": "2", "b": "ok"})]


@pytest.mark.parametrize("block", [3, 1 << 16])
def test_overlong_lines_inside_the_rest_of_a_rejected_field(tmp_path, monkeypatch, block):
    monkeypatch.setattr(_lines, "BLOCK_SIZE", block)
    long = "z" * 50
    text = f'a,b\n1,"{long}\n{FORGED}\n{long}""{long}\n{FORGED}\n{long}"\n2,ok\n'
    records = read(tmp_path, text, max_line_length=20)
    assert summary(records) == [(2, "line 2 is longer than 20 characters (lines 2-6)"), (7, {"a": "2", "b": "ok"})]


def test_a_rejected_field_left_open_at_the_end_of_the_file(tmp_path):
    records = read(tmp_path, 'a,b\n2,ok\n1,"' + "x\n" * 30 + FORGED + "\n", max_line_length=20)
    assert summary(records) == [(2, {"a": "2", "b": "ok"}), (3, "record is longer than 20 characters (lines 3-33)")]


def test_a_stray_quote_in_a_multiline_field_stops_the_reading(tmp_path):
    # Where the field ends cannot be told: reading stops instead of taking its text for rows.
    text = 'a,b\n0,ok\n1,"first line\nsays "hi" to\n' + FORGED + '\nend"\n2,ok\n'
    got = []
    with pytest.raises(FatalError, match="malformed quoting on line 4, in the record starting on line 3") as info:
        got.extend(source(write(tmp_path, text)).read())
    assert summary(got) == [(2, {"a": "0", "b": "ok"})]
    assert "must be doubled" in str(info.value)


def test_a_stray_quote_that_leaves_a_quote_open_stops_the_reading(tmp_path):
    with pytest.raises(FatalError, match="malformed quoting on line 2, in a record that leaves a quote open"):
        read(tmp_path, 'a,b\n1,"x"y,"z\n' + FORGED + '\nend"\n2,ok\n')


_CELL_PIECES = [b"a", b",", b'"', b'""', b"\n", b"\r", b"\r\n", FORGED.encode() + b"\n", b"\xff", b"\x00", b"\xc3\xa9", b"q" * 25]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cell=st.binary(max_size=60) | st.lists(st.sampled_from(_CELL_PIECES), max_size=30).map(b"".join),
    block=st.integers(min_value=1, max_value=64),
    max_field=st.integers(min_value=4, max_value=40),
    max_line=st.integers(min_value=12, max_value=60),
    max_fields=st.integers(min_value=3, max_value=8),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_nothing_inside_a_quoted_cell_ever_becomes_a_record(tmp_path, cell, block, max_field, max_line, max_fields, newline):
    # A correct writer (quotes doubled) wrote one hostile cell; whatever the cell holds and
    # whichever limit it breaks, the records start on the rows' lines and nowhere else.
    quoted = b'"' + cell.replace(b'"', b'""') + b'"'
    rows = [b"id,text,n", b"1," + quoted + b",x", b"2,ok,y"]
    content = newline.join(rows) + newline
    starts = [1, 2, 2 + len(quoted.splitlines()) - (quoted.endswith((b"\n", b"\r")))]
    path = write(tmp_path, content, name="cell.csv")
    options = {"max_field_size": max_field, "max_line_length": max_line, "max_fields": max_fields}
    with mock.patch.object(_lines, "BLOCK_SIZE", block):
        records = list(source(path, **options).read())
    assert [r.line for r in records] == starts[1:]
    first, last = records
    assert first.error or first.data == {"id": "1", "text": cell.decode(), "n": "x"}
    assert last.data == {"id": "2", "text": "ok", "n": "y"}


# -- block boundaries and properties ------------------------------------------------------


TRICKY = (
    b"\xef\xbb\xbfid,text\r\n"
    b'1,"a\r\nb"\r\n'
    b"2,plain\r"
    b'3,"x\rz"\n'
    b"\r\n"
    b"4,caf\xc3\xa9 \xff\r\n"
    b'5,"q""q"\n'
    b"6,a\x00b\n"
    b"7,long long long\r\n"
    b"\n"
    b"8,end"
)


@pytest.mark.parametrize(
    ("options", "lines"),
    [
        ({}, [2, 4, 5, 8, 9, 10, 11, 13]),
        ({"max_line_length": 9, "skip_blank_lines": False}, [2, 4, 5, 7, 8, 9, 10, 11, 12, 13]),
    ],
)
def test_block_size_does_not_change_the_result(tmp_path, options, lines):
    path = write(tmp_path, TRICKY)
    expected = [(r.line, r.data, r.raw, r.error) for r in source(path, **options).read()]
    assert [line for line, *_ in expected] == lines
    for size in range(1, 10):
        with mock.patch.object(_lines, "BLOCK_SIZE", size):
            got = [(r.line, r.data, r.raw, r.error) for r in source(path, **options).read()]
        assert got == expected, size


_ROW_TEXT = st.text(alphabet=st.sampled_from('ab,"\r\n é'), max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.lists(_ROW_TEXT, min_size=3, max_size=3), max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    block=st.integers(min_value=1, max_value=16),
)
def test_round_trip_of_written_csv(tmp_path, rows, newline, block):
    text = _csv_line(["a", "b", "c"], newline)
    expected = []
    for row in rows:
        expected.append((_line_count(text) + 1, dict(zip("abc", row, strict=False))))
        text += _csv_line(row, newline)
    path = write(tmp_path, text, name="round.csv")
    with mock.patch.object(_lines, "BLOCK_SIZE", block):
        records = list(source(path).read())
    assert summary(records) == expected


def _csv_line(row: list[str], newline: str) -> str:
    """Write a row as RFC 4180 does (csv.writer leaves a lone \\r unquoted)."""
    quoted = ['"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\r\n') else v for v in row]
    return ",".join(quoted) + newline


def _line_count(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


_TOKENS = [b"a", b",", b'"', b"\n", b"\r", b"\r\n", b"\xff", b"\x00", b"\xc3\xa9", b"xyz", b"q" * 30]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.binary(max_size=200) | st.lists(st.sampled_from(_TOKENS)).map(b"".join),
    header=st.booleans(),
    skip_blank=st.booleans(),
    block=st.integers(min_value=1, max_value=32),
    max_field=st.integers(min_value=1, max_value=12),
    max_line=st.integers(min_value=1, max_value=24),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
)
def test_arbitrary_bytes_only_raise_typed_errors(
    tmp_path, content, header, skip_blank, block, max_field, max_line, encoding
):
    path = write(tmp_path, content, name="random.csv")
    options = {
        "header": header,
        "columns": None if header else ["a", "b"],
        "skip_blank_lines": skip_blank,
        "max_field_size": max_field,
        "max_line_length": max_line,
        "encoding": encoding,
    }

    def outcome(block_size: int) -> tuple[list[tuple[int, dict, object, str | None]], str | None]:
        src = source(path, **options)
        records = []
        with mock.patch.object(_lines, "BLOCK_SIZE", block_size):
            try:
                for r in src.read():
                    records.append((r.line, r.data, r.raw, r.error))
            except EtlError as exc:
                return records, str(exc)
        assert src.progress() == (len(content), len(content))
        return records, None

    records, error = outcome(block)
    lines = [line for line, *_ in records]
    assert all(line > 0 for line in lines)
    assert lines == sorted(set(lines))
    assert all((err is None) == bool(data) for _, data, _, err in records)
    # Where the file is cut into blocks must not matter (except which of two utf-16
    # decoding errors the codec meets first).
    records_2, error_2 = outcome(1 << 16)
    assert records_2 == records
    assert (error_2 is None) == (error is None)
    if encoding != "utf-16":
        assert error_2 == error
