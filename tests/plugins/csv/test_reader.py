"""Tests of the csv source's records: rows, rejected rows, blank lines, the header and the dialect."""

from __future__ import annotations

import csv

import pytest

from etl_core import FatalError

from .conftest import HEADER, read, source, summary, write

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


# -- blank lines --------------------------------------------------------------------------


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


# -- dialect ------------------------------------------------------------------------------


def test_custom_delimiter_and_quotechar(tmp_path):
    records = read(tmp_path, "a;b\n'x;y';'it''s'\n1;2\n", delimiter=";", quotechar="'")
    assert summary(records) == [(2, {"a": "x;y", "b": "it's"}), (3, {"a": "1", "b": "2"})]


def test_tab_delimiter(tmp_path):
    assert summary(read(tmp_path, "a\tb\n1,5\t2\n", delimiter="\t")) == [(2, {"a": "1,5", "b": "2"})]
