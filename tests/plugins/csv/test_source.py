"""Tests of the csv source plugin: registration, options, check() and progress."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

import etl_csv
from etl_core import ConfigError
from etl_csv import CsvSource, _lines

from .conftest import HEADER, source, write

# -- registration and options -------------------------------------------------------------


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


# -- check --------------------------------------------------------------------------------


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


def test_check_messages_do_not_quote_the_path(tmp_path):
    missing = tmp_path / "s3cr3t-name.csv"
    with pytest.raises(ConfigError) as info:
        source(missing).check()
    assert str(info.value) == "source.path: file not found"


def test_a_relative_path_that_is_not_found_says_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        source(Path("data/contacts.csv")).check()
    assert info.value.message == f"file not found (a relative path is read from the current directory, {tmp_path})"


# -- progress -----------------------------------------------------------------------------


def test_progress_counts_bytes_read(tmp_path, monkeypatch):
    monkeypatch.setattr(_lines, "BLOCK_SIZE", 64)
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


# -- sample(): the input check before anything is sent -----------------------------------


def test_sample_reads_the_header_and_the_first_records_without_consuming_the_file(tmp_path):
    path = write(tmp_path, "id,email\n" + "".join(f"{i},u{i}@example.com\n" for i in range(50)))
    src = source(path)
    sample = src.sample(10)
    assert sample.fields == ["id", "email"] and [r.data["id"] for r in sample.records] == [str(i) for i in range(10)]
    assert len(list(src.read())) == 50  # the run still reads it all


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("id,name\n" + "".join(f"{i},Jérôme\n" for i in range(20)), "cp1252", "it looks like cp1252: set source.encoding: cp1252"),
        ("id,name\n1,Ĳ\n", "utf-16", "UTF-16 byte-order mark: set source.encoding: utf-16"),
        ("id,name\n1,x\n", "utf-32", "UTF-32 byte-order mark: set source.encoding: utf-32"),
    ],
    ids=["cp1252", "utf-16", "utf-32"],
)
def test_sample_of_a_file_in_another_encoding_names_the_setting(tmp_path, text, encoding, expected):
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(ConfigError) as error:
        source(path).sample(1000)
    assert error.value.path == "source.encoding" and expected in error.value.message
    # Set as suggested, the same file reads cleanly.
    suggested = expected.rsplit(" ", 1)[-1]
    assert not [r for r in source(path, encoding=suggested).sample(1000).records if r.error]


def test_a_damaged_row_among_a_hundred_good_ones_is_left_to_be_rejected(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,name\n" + b"".join(b"%d,x\n" % i for i in range(150)) + b"999,\xff\xfe\n")
    sample = source(path).sample(1000)
    assert [r.line for r in sample.records if r.error] == [152]


def test_encoding_hint_is_silent_for_a_file_in_its_encoding(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes("id,name\n1,Jérôme\n".encode())
    assert etl_csv.encoding_hint(str(path), "utf-8") is None
    path.write_bytes("id,name\n1,Jérôme\n".encode("utf-16"))
    assert etl_csv.encoding_hint(str(path), "utf-16") is None
