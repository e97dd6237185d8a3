"""Shared helpers of the csv source tests: writing a file and reading it with the source."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from etl_core import Record
from etl_csv import CsvSource

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
