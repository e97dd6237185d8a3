"""Tests of the csv source's input: refusing what is not a regular file, byte-order marks, encodings."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

import pytest

from etl_core import ConfigError, FatalError, Record
from etl_csv import _lines

from .conftest import read, source, summary, write

# -- files that are not regular files -----------------------------------------------------


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


def test_read_of_a_missing_file_is_fatal(tmp_path):
    with pytest.raises(FatalError, match="cannot open .*missing.csv"):
        list(source(tmp_path / "missing.csv").read())


# -- byte-order marks and encodings -------------------------------------------------------


def test_utf8_bom_is_stripped(tmp_path):
    records = read(tmp_path, b"\xef\xbb\xbf" + "id,name\n1,Zoë\n".encode())
    assert summary(records) == [(2, {"id": "1", "name": "Zoë"})]


def test_utf8_sig_encoding_strips_bom_once(tmp_path):
    content = b"\xef\xbb\xbfid,name\n1,\xef\xbb\xbfx\n"  # a second BOM is data
    assert summary(read(tmp_path, content, encoding="utf-8-sig")) == [(2, {"id": "1", "name": "\ufeffx"})]


def test_latin1(tmp_path):
    content = "nom;ville\nRenée;Besançon\n".encode("latin-1")
    records = read(tmp_path, content, encoding="latin-1", delimiter=";")
    assert summary(records) == [(2, {"nom": "Renée", "ville": "Besançon"})]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32(tmp_path, encoding):
    text = 'id,name\r\n1,"Zoë\r\nMüller"\r\n2,Ann\r\n'
    records = read(tmp_path, text.encode(encoding), encoding=encoding)
    assert summary(records) == [(2, {"id": "1", "name": "Zoë\r\nMüller"}), (4, {"id": "2", "name": "Ann"})]


def test_utf16_le_with_bom(tmp_path):
    content = "\ufeffid\n1\n".encode("utf-16-le")
    assert summary(read(tmp_path, content, encoding="utf-16-le")) == [(2, {"id": "1"})]


def test_undecodable_utf16_is_fatal_and_names_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr(_lines, "BLOCK_SIZE", 8)
    content = "id\n1\n2\n".encode("utf-16-le") + b"\x00\xdc" + "3\n".encode("utf-16-le")
    records: list[Record] = []
    with pytest.raises(FatalError, match="not valid utf-16-le on line 4"):
        records.extend(source(write(tmp_path, content), encoding="utf-16-le").read())
    assert summary(records) == [(2, {"id": "1"}), (3, {"id": "2"})]


def test_truncated_utf16_is_fatal(tmp_path):
    content = "id\n1\n".encode("utf-16") + b"\x41"
    with pytest.raises(FatalError, match="not valid utf-16 on line 3"):
        read(tmp_path, content, encoding="utf-16")
