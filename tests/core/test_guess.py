"""Sniffing a CSV file's encoding, delimiter, header and column names (etl guess)."""

from __future__ import annotations

import codecs
import csv
import io
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from etl_core import ConfigError
from etl_core._guess import DELIMITERS, quoted, read_rows, sniff, sniff_delimiter, sniff_encoding, sniff_header, unique_names
from etl_csv import CsvOptions, CsvSource


def csv_bytes(rows: list[list[str]], *, delimiter: str = ",", encoding: str = "utf-8", newline: str = "\n") -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return buffer.getvalue().encode(encoding)


UUIDS = ["2deb7c23-22cb-529c-a665-4070c5257d4e", "f6131d5d-4738-571c-bbb5-d5335744e43e", "48b130e8-3738-523c-bc04-7df5faf068af"]
CONTACTS = [["contactId", "firstName", "lastName", "email"]] + [
    [uuid, name, last, f"{name.lower()}@example.com"]
    for uuid, name, last in zip(UUIDS, ["Zoë", "Seán", "Lucía"], ["Müller", "O'Brien", "Dubois"], strict=True)
]


# -- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8-sig", "utf-8"),
        ("utf-16", "utf-16"),
        ("utf-16-be", "utf-16-be"),  # no byte-order mark: told by the zero bytes
        ("utf-16-le", "utf-16-le"),
        ("utf-32", "utf-32"),
        ("utf-8", "utf-8"),
        ("cp1252", "cp1252"),
    ],
)
def test_the_encoding_is_sniffed_and_decodes_the_file(encoding, expected):
    data = csv_bytes(CONTACTS, encoding=encoding)
    sniffed = sniff(data)
    assert sniffed.encoding == expected
    assert [sniffed.names, *sniffed.rows] == CONTACTS


def test_byte_order_marks_are_sure_and_plain_ascii_is_only_likely():
    assert sniff_encoding(codecs.BOM_UTF8 + b"a,b\n")[1].startswith("sure:")
    assert sniff_encoding("é,b\n".encode())[1].startswith("sure:")
    assert sniff_encoding(b"a,b\n")[1].startswith("likely:")


def test_bytes_cp1252_leaves_undefined_are_read_as_latin_1():
    data = "name\nZoë\x81\n".encode("latin-1")  # 0x81 is a control character in Latin-1, nothing in cp1252
    assert sniff_encoding(data)[0] == "latin-1"
    assert sniff(data).rows == [["Zoë\x81"]]


def test_a_utf_8_character_cut_by_the_end_of_the_sample_is_still_utf_8():
    data = "name\nZoë\n".encode()
    assert sniff_encoding(data[:-2], complete=False)[0] == "utf-8"
    assert sniff_encoding(data[:-2], complete=True)[0] == "cp1252"


def test_nul_bytes_that_are_not_utf_16_are_not_text():
    with pytest.raises(ConfigError, match="NUL bytes"):
        sniff(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01")


# -- delimiter -----------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", DELIMITERS)
def test_quoted_fields_holding_other_delimiters_do_not_mislead(delimiter):
    rows = [["id", "city", "note"]] + [[str(i), "Washington, D.C.", "a;b|c\td"] for i in range(5)]
    text = csv_bytes(rows, delimiter=delimiter).decode()
    # csv.writer quotes only fields holding the delimiter: the others' ",;|\t" are bare.
    assert sniff_delimiter(text)[0] == delimiter


def test_a_delimiter_that_splits_the_header_like_the_rows_wins():
    # Every row has one ";" in its note, but the header has none: the file is comma-delimited.
    text = "id,note\n" + "".join(f"{i},see; also\n" for i in range(20))
    assert sniff_delimiter(text) == (",", "sure: all 21 rows read have 2 fields")


def test_a_few_ragged_rows_leave_the_delimiter_likely():
    text = "a;b;c\n" + "1;2;3\n" * 18 + "1;2\n"
    assert sniff_delimiter(text) == (";", "likely: 19 of 20 rows read have 3 fields")


def test_one_column_is_comma_and_unsure():
    delimiter, note = sniff_delimiter("email\na@example.com\nb@example.com\n")
    assert delimiter == "," and note.startswith("unsure:")


def test_a_row_cut_by_the_end_of_the_sample_is_left_out():
    text = 'a,b\n1,"two\nlines"\n3,fo'
    assert read_rows(text, ",", complete=False) == [["a", "b"], ["1", "two\nlines"]]
    assert read_rows(text, ",", complete=True)[-1] == ["3", "fo"]


# -- header --------------------------------------------------------------------------------


def test_names_over_typed_columns_are_a_header():
    header, note = sniff_header(CONTACTS)
    assert header and note.startswith("sure:") and "UUIDs" in note


def test_a_first_row_like_the_rows_below_is_data():
    header, note = sniff_header(CONTACTS[1:])
    assert not header and note.startswith("sure:")
    sniffed = sniff(csv_bytes(CONTACTS[1:]))
    assert sniffed.names == ["column_1", "column_2", "column_3", "column_4"] and sniffed.renamed
    assert sniffed.rows == CONTACTS[1:]


def test_distinct_names_over_text_are_likely_a_header():
    assert sniff_header([["name", "city"], ["Ann", "Leeds"], ["Bob", "York"]]) == (
        True,
        "likely: the first row is all distinct names (the values below are text: no kind of value tells)",
    )
    assert sniff_header([["Ann", "Ann"], ["Bob", "York"]])[0] is False


def test_empty_and_repeated_header_names_are_renamed():
    assert unique_names(["email", "", "email", "email_2", " "]) == ["email", "column_2", "email_3", "email_2", "column_5"]
    sniffed = sniff(b"id,email,email\n1,a@example.com,b@example.com\n2,c@example.com,\n")
    assert sniffed.header and sniffed.renamed and sniffed.names == ["id", "email", "email_2"]


def test_an_empty_or_endless_line_is_an_error():
    with pytest.raises(ConfigError, match="no row"):
        sniff(b"\n\n")
    with pytest.raises(ConfigError, match="no line break"):
        sniff(b"x" * 100, complete=False)


# -- quoting for YAML ----------------------------------------------------------------------


@given(st.text())
def test_quoted_reads_back_as_the_same_string_and_holds_no_line_break(text):
    assert yaml.safe_load(quoted(text)) == text
    assert len(quoted(text).splitlines()) == 1


# -- property: any table of safe strings is sniffed back -----------------------------------

#: Encodings a file may come in; Latin-1's letters from U+00C0 on, so that no Latin-1 text is valid UTF-8 by chance.
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp1252", "latin-1")
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZàéîõüçñßÀÉÖ"
names = st.text(alphabet=LETTERS, min_size=1, max_size=8).map(str.title)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]], str]:
    """A header of distinct names, rows of text (the delimiter and quotes included), and the delimiter."""
    delimiter = draw(st.sampled_from(DELIMITERS))
    header = draw(st.lists(names, min_size=2, max_size=6, unique=True))
    cell = st.text(alphabet=LETTERS + "0123456789 .-_@+'()" + '"' + delimiter, max_size=12)
    rows = draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), min_size=1, max_size=15))
    return header, rows, delimiter


@settings(max_examples=300, deadline=None)
@given(tables(), st.sampled_from(ENCODINGS), st.sampled_from(["\n", "\r\n"]))
def test_any_table_is_sniffed_back(table, encoding, newline):
    header, rows, delimiter = table
    sniffed = sniff(csv_bytes([header, *rows], delimiter=delimiter, encoding=encoding, newline=newline))
    assert sniffed.delimiter == delimiter
    assert sniffed.header and not sniffed.renamed
    assert sniffed.names == header
    assert sniffed.rows == rows


@settings(max_examples=40, deadline=None)
@given(tables(), st.sampled_from(ENCODINGS))
def test_the_csv_source_reads_a_table_as_sniffed(table, encoding):
    header, rows, delimiter = table
    data = csv_bytes([header, *rows], delimiter=delimiter, encoding=encoding)
    sniffed = sniff(data)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "table.csv"
        path.write_bytes(data)
        options = CsvOptions(path=str(path), delimiter=sniffed.delimiter, encoding=sniffed.encoding, header=sniffed.header)
        records = list(CsvSource(options).read())
    assert [record.error for record in records] == [None] * len(rows)
    assert [record.data for record in records] == [dict(zip(header, row, strict=True)) for row in rows]


def test_the_sample_stops_at_a_thousand_rows_and_says_it_is_not_the_whole_file():
    data = csv_bytes([["id", "n"], *([str(i), "x"] for i in range(1500))])
    sniffed = sniff(data)
    assert len(sniffed.rows) == 1000 and sniffed.rows[-1] == ["999", "x"] and not sniffed.complete
    assert sniff(csv_bytes([["id", "n"], ["1", "x"]])).complete
