"""Tests of the streaming CSV source (``type: csv``)."""

from __future__ import annotations

import contextlib
import csv
import os
import stat
import threading
import tracemalloc
from pathlib import Path
from unittest import mock

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etl_csv
from etl_core import ConfigError, EtlError, FatalError, Record
from etl_csv import CsvSource, _reader

HEADER = "id,name,email\n"


@pytest.fixture(autouse=True)
def _restore_csv_field_limit():
    """The csv module's field limit is process-wide: leave it as the test found it."""
    limit = csv.field_size_limit()
    yield
    csv.field_size_limit(limit)


def write(tmp_path: Path, content: str | bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def source(path: Path, **options: object) -> CsvSource:
    return CsvSource(CsvSource.Options(path=str(path), **options))


def read(tmp_path: Path, content: str | bytes, **options: object) -> list[Record]:
    return list(source(write(tmp_path, content), **options).read())


def summary(records: list[Record]) -> list[tuple[int, dict[str, str] | str]]:
    """(line, data) for good records, (line, error) for rejected ones."""
    return [(r.line, r.error if r.error else r.data) for r in records]


# -- registration and options -----------------------------------------------------------


def test_registered_as_csv_source(registry):
    assert etl_csv.register_sources() == [CsvSource]
    assert registry.get("source", "csv") is CsvSource


def test_option_defaults_and_descriptions():
    opts = CsvSource.Options(path="x.csv")
    assert (opts.delimiter, opts.quotechar, opts.encoding, opts.header, opts.columns) == (",", '"', "utf-8", True, None)
    assert opts.max_field_size == 1_048_576
    assert opts.max_line_length == 8 * 1_048_576
    assert opts.max_fields == 16_384
    assert opts.skip_blank_lines is True
    for name, field in CsvSource.Options.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delimiter": ";;"}, "at most 1 character"),
        ({"delimiter": ""}, "at least 1 character"),
        ({"quotechar": "''"}, "at most 1 character"),
        ({"delimiter": "\n"}, "line break"),
        ({"delimiter": '"'}, "delimiter and quotechar must differ"),
        ({"encoding": "no-such-codec"}, "unknown text encoding \\(a Python codec name"),
        ({"encoding": "rot13"}, "unknown text encoding"),
        ({"header": False}, "columns is required when header is false"),
        ({"columns": ["b", "a", "a"]}, "duplicate column name \\(names 2 and 3\\)"),
        ({"columns": ["a", " "]}, "must not be empty"),
        ({"columns": []}, "at least one column"),
        ({"max_field_size": 0}, "greater than or equal to 1"),
        ({"max_fields": 0}, "greater than or equal to 1"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options(options, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        CsvSource.Options(path="x.csv", **options)


@pytest.mark.parametrize(
    ("options", "value"), [({"encoding": "s3cr3t-codec"}, "s3cr3t-codec"), ({"columns": ["k3y", "k3y"]}, "k3y")]
)
def test_option_errors_do_not_quote_the_value(options, value):
    with pytest.raises(pydantic.ValidationError) as info:
        CsvSource.Options(path="x.csv", **options)
    # The core reports the message without the input (a value may be a secret).
    messages = " ".join(error["msg"] for error in info.value.errors())
    assert messages and value not in messages


# -- the basics ---------------------------------------------------------------------------


def test_reads_records_with_line_numbers(tmp_path):
    records = read(tmp_path, HEADER + "1,Ann,ann@example.com\n2,Bob,bob@example.com\n")
    assert summary(records) == [
        (2, {"id": "1", "name": "Ann", "email": "ann@example.com"}),
        (3, {"id": "2", "name": "Bob", "email": "bob@example.com"}),
    ]
    assert all(r.raw == r.data and r.error is None for r in records)


def test_header_only_gives_no_records(tmp_path):
    assert read(tmp_path, HEADER) == []


def test_last_line_without_line_break(tmp_path):
    assert summary(read(tmp_path, "a,b\n1,2")) == [(2, {"a": "1", "b": "2"})]


def test_utf8_bom_is_stripped(tmp_path):
    records = read(tmp_path, b"\xef\xbb\xbf" + "id,name\n1,Zoë\n".encode())
    assert summary(records) == [(2, {"id": "1", "name": "Zoë"})]


def test_utf8_sig_encoding_strips_bom_once(tmp_path):
    content = b"\xef\xbb\xbfid,name\n1,\xef\xbb\xbfx\n"  # a second BOM is data
    assert summary(read(tmp_path, content, encoding="utf-8-sig")) == [(2, {"id": "1", "name": "\ufeffx"})]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings(tmp_path, newline):
    text = newline.join(["a,b", "1,2", "3,4", ""])
    assert summary(read(tmp_path, text)) == [(2, {"a": "1", "b": "2"}), (3, {"a": "3", "b": "4"})]


def test_mixed_line_endings(tmp_path):
    records = read(tmp_path, "a,b\r\n1,2\n3,4\r5,6\r\n")
    assert [r.line for r in records] == [2, 3, 4]


def test_quoting_delimiters_doubled_quotes_and_embedded_newlines(tmp_path):
    text = (
        "id,text\n"
        '1,"a, b"\n'
        '2,"say ""hi"""\n'
        '3,"two\nlines"\n'
        '4,"three\r\nCRLF\r\nlines"\n'
        '5,"old\rmac"\n'
        "6,after\n"
    )
    assert summary(read(tmp_path, text)) == [
        (2, {"id": "1", "text": "a, b"}),
        (3, {"id": "2", "text": 'say "hi"'}),
        (4, {"id": "3", "text": "two\nlines"}),
        (6, {"id": "4", "text": "three\r\nCRLF\r\nlines"}),
        (9, {"id": "5", "text": "old\rmac"}),
        (11, {"id": "6", "text": "after"}),
    ]


def test_quote_inside_unquoted_field_is_literal(tmp_path):
    assert summary(read(tmp_path, 'a,b\n5" pipe,x\n')) == [(2, {"a": '5" pipe', "b": "x"})]


# -- rejected rows ------------------------------------------------------------------------


def test_too_many_and_too_few_fields(tmp_path):
    text = "a,b,c,d,e\n1,2,3,4,5,6,7\n1,2\n1,2,3,4,5\n"
    records = read(tmp_path, text)
    assert summary(records) == [
        (2, "expected 5 fields (header), got 7"),
        (3, "expected 5 fields (header), got 2"),
        (4, {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}),
    ]
    assert records[0].data == {}
    assert records[0].raw == {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "_extra_1": "6", "_extra_2": "7"}
    assert records[1].raw == {"a": "1", "b": "2"}


def test_ragged_multiline_row_reports_its_first_line(tmp_path):
    records = read(tmp_path, 'a,b\n"x\ny",2,3\n4,5\n')
    assert summary(records) == [(2, "expected 2 fields (header), got 3 (lines 2-3)"), (4, {"a": "4", "b": "5"})]


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


def test_nul_character_rejects_the_row(tmp_path):
    records = read(tmp_path, b"a,b\n1,x\x00y\n2,ok\n")
    assert summary(records) == [(2, "NUL character on line 2"), (3, {"a": "2", "b": "ok"})]
    assert records[0].raw == {"a": "1", "b": "x\x00y"}


def test_unterminated_quote_at_end_of_file(tmp_path):
    records = read(tmp_path, 'a,b\n1,2\n3,"open\nstill open\n')
    assert summary(records) == [
        (2, {"a": "1", "b": "2"}),
        (3, "unterminated quoted field at the end of the file (lines 3-4)"),
    ]


def test_text_after_closing_quote(tmp_path):
    records = read(tmp_path, 'a,b\n1,"x"y\n2,z\n')
    assert records[0].line == 2
    assert records[0].error.startswith("unexpected character after a closing quote")
    assert summary(records[1:]) == [(3, {"a": "2", "b": "z"})]


def test_oversized_field_is_rejected_and_reading_continues(tmp_path):
    text = "a,b\n" + "x" * 11 + ",1\n" + '"' + "y\n" * 6 + '",2\n' + "x" * 10 + ",3\n"
    records = read(tmp_path, text, max_field_size=10)
    assert summary(records) == [
        (2, "field 1 (a) is longer than 10 characters"),
        (3, "field 1 (a) is longer than 10 characters (lines 3-9)"),
        (10, {"a": "x" * 10, "b": "3"}),
    ]


def test_the_csv_module_never_stops_inside_a_field(tmp_path):
    # csv's own (process-wide) limit is raised to max_line_length: a record is never cut
    # by csv in the middle of a field, where the next line is still the field's text.
    csv.field_size_limit(5)
    records = read(tmp_path, 'a,b\n1,"' + "x\n" * 15 + '3,forged\n"\n2,3\n', max_field_size=20, max_line_length=100)
    assert csv.field_size_limit() == 100
    assert summary(records) == [(2, "field 2 (b) is longer than 20 characters (lines 2-18)"), (19, {"a": "2", "b": "3"})]


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
    monkeypatch.setattr(_reader, "BLOCK_SIZE", 4)
    line = "é" * 8 + ",x"  # 10 characters, 18 bytes
    records = read(tmp_path, "a,b\n" + line + "\n1,2\n", max_line_length=10)
    assert summary(records) == [(2, {"a": "é" * 8, "b": "x"}), (3, {"a": "1", "b": "2"})]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_oversized_line_across_many_blocks(tmp_path, monkeypatch, newline):
    monkeypatch.setattr(_reader, "BLOCK_SIZE", 7)
    text = newline.join(["a,b", "1," + "x" * 100, "2,ok", "3," + "y" * 100, "4,ok", ""])
    records = read(tmp_path, text, max_line_length=20)
    assert summary(records) == [
        (2, "line 2 is longer than 20 characters"),
        (3, {"a": "2", "b": "ok"}),
        (4, "line 4 is longer than 20 characters"),
        (5, {"a": "4", "b": "ok"}),
    ]


# -- no row is ever read out of a quoted field -------------------------------------------

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
    monkeypatch.setattr(_reader, "BLOCK_SIZE", block)
    cell = newline.join(["x,x,x"] * 12 + [FORGED, "end"])
    text = newline.join(["a,b", f'{row}"{cell}"', "2,ok", ""])
    assert summary(read(tmp_path, text, **options)) == [(2, reason + " (lines 2-15)"), (16, {"a": "2", "b": "ok"})]


@pytest.mark.parametrize("block", [3, 1 << 16])
def test_an_overlong_line_that_opens_a_quoted_field(tmp_path, monkeypatch, block):
    # The line is skipped without being held, but its quotes are followed as it passes.
    monkeypatch.setattr(_reader, "BLOCK_SIZE", block)
    text = 'a,b\n1,"' + "y" * 50 + "\n" + FORGED + '\nend"\n2,ok\n'
    records = read(tmp_path, text, max_line_length=20)
    assert summary(records) == [(2, "line 2 is longer than 20 characters (lines 2-4)"), (5, {"a": "2", "b": "ok"})]


@pytest.mark.parametrize("block", [3, 1 << 16])
def test_overlong_lines_inside_the_rest_of_a_rejected_field(tmp_path, monkeypatch, block):
    monkeypatch.setattr(_reader, "BLOCK_SIZE", block)
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
    with mock.patch.object(_reader, "BLOCK_SIZE", block):
        records = list(source(path, **options).read())
    assert [r.line for r in records] == starts[1:]
    first, last = records
    assert first.error or first.data == {"id": "1", "text": cell.decode(), "n": "x"}
    assert last.data == {"id": "2", "text": "ok", "n": "y"}


_QUOTING = st.text(alphabet='ab,"', max_size=14)


@settings(max_examples=500, deadline=None)
@given(text=_QUOTING.filter(bool), cuts=st.lists(st.integers(min_value=0, max_value=14), max_size=3))
def test_the_quote_follower_reads_a_line_as_csv_does(text, cuts):
    follower = _reader._QuoteFollower(",", '"')
    bounds = sorted({0, len(text), *(min(cut, len(text)) for cut in cuts)})
    for start, stop in zip(bounds, bounds[1:]):
        follower.feed(text[start:stop])
    try:
        row = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        if str(exc) == "unexpected end of data":  # the record goes on to the next line
            assert follower.state == _reader._QUOTED
        else:
            assert follower.state == _reader._MALFORMED
    else:
        assert follower.state not in (_reader._QUOTED, _reader._MALFORMED)
        assert follower.fields == len(row)
    assert follower.quotes == text.count('"')


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


def test_blank_lines_are_skipped_by_default(tmp_path):
    records = read(tmp_path, "\n\na,b\n\n1,2\r\n\r\n\n3,4\n\n")
    assert summary(records) == [(5, {"a": "1", "b": "2"}), (8, {"a": "3", "b": "4"})]


def test_blank_lines_rejected_when_not_skipped(tmp_path):
    records = read(tmp_path, "a,b\n1,2\n\n3,4\n", skip_blank_lines=False)
    assert summary(records) == [(2, {"a": "1", "b": "2"}), (3, "blank line, expected 2 fields"), (4, {"a": "3", "b": "4"})]


def test_blank_line_is_an_empty_value_in_a_one_column_file(tmp_path):
    records = read(tmp_path, "email\na@x\n\nb@x\n", skip_blank_lines=False)
    assert summary(records) == [(2, {"email": "a@x"}), (3, {"email": ""}), (4, {"email": "b@x"})]


# -- header -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty; expected a header line"),
        ("\n\r\n\n", "the file is empty; expected a header line"),
        ("id,,email\n", "column 2 has no name in the header on line 1"),
        ("id, ,email\n", "column 2 has no name in the header on line 1"),
        ("id,email,id\n", "duplicate column name 'id' in the header on line 1 \\(columns 1 and 3\\)"),
        (b"id,\xffmail\n", "cannot read the header on line 1: not valid utf-8 at byte 4 of line 1"),
        ('id,"email\n', "cannot read the header on line 1: unterminated quoted field"),
    ],
)
def test_unusable_header_is_fatal(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(FatalError, match=message) as info:
        list(source(path).read())
    assert str(path) in str(info.value)


def test_blank_first_line_is_an_empty_header_when_not_skipping(tmp_path):
    with pytest.raises(FatalError, match="the header on line 1 is empty"):
        read(tmp_path, "\na,b\n", skip_blank_lines=False)


def test_no_header_uses_columns(tmp_path):
    records = read(tmp_path, "1,2\n3,4,5\n", header=False, columns=["x", "y"])
    assert summary(records) == [(1, {"x": "1", "y": "2"}), (2, "expected 2 fields (columns), got 3")]


def test_columns_rename_the_header(tmp_path):
    records = read(tmp_path, "Contact ID,E-mail,E-mail\n1,a@x,b@x\n", columns=["id", "email", "email2"])
    assert summary(records) == [(2, {"id": "1", "email": "a@x", "email2": "b@x"})]


def test_columns_must_match_the_header_width(tmp_path):
    with pytest.raises(FatalError, match="the header on line 1 has 3 columns but 'columns' lists 2 names"):
        read(tmp_path, "a,b,c\n1,2,3\n", columns=["x", "y"])


# -- files --------------------------------------------------------------------------------


def test_check_accepts_a_readable_file(tmp_path):
    source(write(tmp_path, HEADER)).check()


def test_check_reports_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found") as info:
        source(tmp_path / "missing.csv").check()
    assert info.value.path == "source.path"


def test_check_reports_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory") as info:
        source(tmp_path).check()
    assert info.value.path == "source.path"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions that apply")
def test_check_reports_permission_denied(tmp_path):
    path = write(tmp_path, HEADER)
    path.chmod(0)
    with pytest.raises(ConfigError, match="permission denied") as info:
        source(path).check()
    assert info.value.path == "source.path"


def check_and_read(path: Path) -> tuple[str, str]:
    """The messages of check() and read() of ``path``, which must both refuse it within 10 s."""
    messages: dict[str, str] = {}

    def attempt() -> None:
        with pytest.raises(ConfigError) as checked:
            source(path).check()
        messages["check"] = str(checked.value)
        assert checked.value.path == "source.path"
        with pytest.raises(FatalError) as read_error:
            list(source(path).read())
        messages["read"] = str(read_error.value)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive() and stat.S_ISFIFO(os.stat(path).st_mode):
        with contextlib.suppress(OSError):  # a writer lets the blocked open() return
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"blocked on {path}")
    thread.join(10)
    assert set(messages) == {"check", "read"}
    return messages["check"], messages["read"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "contacts.csv"
    os.mkfifo(fifo)
    checked, read_error = check_and_read(fifo)
    assert checked == "source.path: is a named pipe (FIFO), not a regular file"
    assert read_error == f"cannot read {fifo}: it is a named pipe (FIFO), not a regular file"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused():
    checked, read_error = check_and_read(Path("/dev/zero"))
    assert checked == "source.path: is a character device, not a regular file"
    assert read_error == "cannot read /dev/zero: it is a character device, not a regular file"


def test_check_messages_do_not_quote_the_path(tmp_path):
    missing = tmp_path / "s3cr3t-name.csv"
    with pytest.raises(ConfigError) as info:
        source(missing).check()
    assert str(info.value) == "source.path: file not found"


def test_read_of_a_missing_file_is_fatal(tmp_path):
    with pytest.raises(FatalError, match="cannot open .*missing.csv"):
        list(source(tmp_path / "missing.csv").read())


# -- dialect and encodings ----------------------------------------------------------------


def test_custom_delimiter_and_quotechar(tmp_path):
    records = read(tmp_path, "a;b\n'x;y';'it''s'\n1;2\n", delimiter=";", quotechar="'")
    assert summary(records) == [(2, {"a": "x;y", "b": "it's"}), (3, {"a": "1", "b": "2"})]


def test_tab_delimiter(tmp_path):
    assert summary(read(tmp_path, "a\tb\n1,5\t2\n", delimiter="\t")) == [(2, {"a": "1,5", "b": "2"})]


def test_latin1(tmp_path):
    content = "nom;ville\nRenée;Besançon\n".encode("latin-1")
    records = read(tmp_path, content, encoding="latin-1", delimiter=";")
    assert summary(records) == [(2, {"nom": "Renée", "ville": "Besançon"})]


def test_cp1252_undefined_byte_rejects_its_row(tmp_path):
    content = b"a,b\n1,\x80uro\n2,\x81\n3,ok\n"
    records = read(tmp_path, content, encoding="cp1252")
    assert summary(records) == [
        (2, {"a": "1", "b": "€uro"}),
        (3, "not valid cp1252 at byte 3 of line 3 (0x81)"),
        (4, {"a": "3", "b": "ok"}),
    ]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32(tmp_path, encoding):
    text = 'id,name\r\n1,"Zoë\r\nMüller"\r\n2,Ann\r\n'
    records = read(tmp_path, text.encode(encoding), encoding=encoding)
    assert summary(records) == [(2, {"id": "1", "name": "Zoë\r\nMüller"}), (4, {"id": "2", "name": "Ann"})]


def test_utf16_le_with_bom(tmp_path):
    content = "\ufeffid\n1\n".encode("utf-16-le")
    assert summary(read(tmp_path, content, encoding="utf-16-le")) == [(2, {"id": "1"})]


def test_undecodable_utf16_is_fatal_and_names_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr(_reader, "BLOCK_SIZE", 8)
    content = "id\n1\n2\n".encode("utf-16-le") + b"\x00\xdc" + "3\n".encode("utf-16-le")
    records: list[Record] = []
    with pytest.raises(FatalError, match="not valid utf-16-le on line 4"):
        records.extend(source(write(tmp_path, content), encoding="utf-16-le").read())
    assert summary(records) == [(2, {"id": "1"}), (3, {"id": "2"})]


def test_truncated_utf16_is_fatal(tmp_path):
    content = "id\n1\n".encode("utf-16") + b"\x41"
    with pytest.raises(FatalError, match="not valid utf-16 on line 3"):
        read(tmp_path, content, encoding="utf-16")


# -- progress -----------------------------------------------------------------------------


def test_progress_counts_bytes_read(tmp_path, monkeypatch):
    monkeypatch.setattr(_reader, "BLOCK_SIZE", 64)
    text = HEADER + "".join(f"{i},name{i},n{i}@example.com\n" for i in range(100))
    path = write(tmp_path, text)
    src = source(path)
    assert src.progress() == (0, None)
    size = path.stat().st_size
    seen = []
    for _ in src.read():
        seen.append(src.progress())
    assert all(total == size for _, total in seen)
    done = [d for d, _ in seen]
    assert done == sorted(done) and 0 < done[0] < size
    assert src.progress() == (size, size)


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
        with mock.patch.object(_reader, "BLOCK_SIZE", size):
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
        expected.append((_line_count(text) + 1, dict(zip("abc", row))))
        text += _csv_line(row, newline)
    path = write(tmp_path, text, name="round.csv")
    with mock.patch.object(_reader, "BLOCK_SIZE", block):
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
        with mock.patch.object(_reader, "BLOCK_SIZE", block_size):
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
