"""Tests of the jsonl source, written with etl's plugin test kit (etl_core.testing)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import etl_jsonl_source
import pytest
from etl_jsonl_source import JsonlSource

from etl_core import ConfigError
from etl_core.testing import RecordingSink, check_plugin_class, run_pipeline_sync


def write(path: Path, *lines: str | bytes) -> Path:
    path.write_bytes(b"".join(line if isinstance(line, bytes) else line.encode("utf-8") for line in lines))
    return path


def run(tmp_path: Path, source: dict, transforms: list | None = None):
    """Run jsonl -> transforms -> a recording sink; return (result, sink, rejects rows)."""
    sink = RecordingSink()
    result = run_pipeline_sync(
        {
            "pipeline": "jsonl-test",
            "source": {"type": "jsonl", **source},
            "transforms": transforms or [],
            "run": {"workers": 2},
        },
        # The module is registered even when the package is not installed (and only
        # once when it is, through its entry point).
        plugins=[etl_jsonl_source],
        sink=sink,
        env={},
        tmp_dir=tmp_path / "out",
    )
    rejects_path = tmp_path / "out" / "rejects.csv"
    rejects = []
    if rejects_path.exists():
        with open(rejects_path, newline="", encoding="utf-8") as f:
            rejects = list(csv.DictReader(f))
    return result, sink, rejects


def test_plugin_class_is_well_formed():
    check_plugin_class(JsonlSource, {"path": "contacts.jsonl"})


def test_reads_objects_with_their_line_numbers(tmp_path):
    path = write(
        tmp_path / "in.jsonl",
        b"\xef\xbb\xbf" + b'{"id": 1, "name": "Ada", "tags": ["a", "b"]}\n',
        "\n",
        '  {"id": 2, "name": "Grace", "active": true, "score": null}\r\n',
        '{"id": 3, "name": "Linus", "address": {"city": "Oslo"}}',  # no final newline
    )
    result, sink, rejects = run(tmp_path, {"path": str(path)})
    assert result.exit_code == 0, result.report
    assert rejects == []
    by_line = {record.line: record.data for record in sink.received}
    assert by_line == {
        1: {"id": 1, "name": "Ada", "tags": ["a", "b"]},
        3: {"id": 2, "name": "Grace", "active": True, "score": None},
        4: {"id": 3, "name": "Linus", "address": {"city": "Oslo"}},
    }


def test_bad_lines_are_rejected_with_their_line_numbers(tmp_path):
    path = write(
        tmp_path / "in.jsonl",
        '{"id": 1}\n',
        '{"id": 2,\n',
        '[1, 2, 3]\n',
        '"just a string"\n',
        b'{"id": "\xff"}\n',
        '{"id": NaN}\n',
        '{"id": 7}\n',
    )
    result, sink, rejects = run(tmp_path, {"path": str(path)})
    assert result.exit_code == 1
    assert sorted(record.data["id"] for record in sink.received) == [1, 7]
    reasons = {int(row["_line"]): row["_reason"] for row in rejects}
    assert set(reasons) == {2, 3, 4, 5, 6}
    assert reasons[2].startswith("not valid JSON:")
    assert reasons[3] == "expected a JSON object, got an array"
    assert reasons[4] == "expected a JSON object, got a string"
    assert reasons[5] == "not valid utf-8 (byte 9 of the line)"
    assert reasons[6] == "not valid JSON: NaN is not a JSON value"
    assert all(row["_stage"] == "source" and row["_plugin"] == "jsonl" for row in rejects)
    texts = {int(row["_line"]): row["_text"] for row in rejects}
    assert texts[3] == "[1, 2, 3]"


def test_works_with_a_transform(tmp_path):
    path = write(tmp_path / "in.jsonl", '{"id": 1, "email": " ADA@EXAMPLE.COM "}\n', '{"id": 2}\n')
    transform = {"type": "map", "fields": {"id": "id", "email": {"from": "email", "normalize": ["strip", "lower"]}}}
    result, sink, rejects = run(tmp_path, {"path": str(path)}, [transform])
    assert sink.data() == [{"id": 1, "email": "ada@example.com"}]
    assert [(row["_line"], row["_stage"], row["_plugin"]) for row in rejects] == [("2", "transform", "map")]
    assert json.loads(rejects[0]["_other_fields"] or "{}") == {} and rejects[0]["id"] == "2"


def test_other_encodings(tmp_path):
    path = write(tmp_path / "in.jsonl", '{"city": "Zürich"}\n'.encode("latin-1"))
    _, sink, _ = run(tmp_path, {"path": str(path), "encoding": "latin-1"})
    assert sink.data() == [{"city": "Zürich"}]


@pytest.mark.parametrize(("encoding", "message"), [("utf-16", "does not keep ASCII bytes"), ("klingon", "unknown text encoding")])
def test_unusable_encoding_is_a_config_error(tmp_path, encoding, message):
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, {"path": str(tmp_path / "in.jsonl"), "encoding": encoding})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="source.path: file not found"):
        run(tmp_path, {"path": str(tmp_path / "missing.jsonl")})
    with pytest.raises(ConfigError, match="is a directory"):
        JsonlSource(JsonlSource.Options(path=str(tmp_path))).check()


def test_progress_counts_bytes(tmp_path):
    path = write(tmp_path / "in.jsonl", *(f'{{"n": {i}}}\n' for i in range(100)))
    source = JsonlSource(JsonlSource.Options(path=str(path)))
    assert source.progress() == (0, None)
    records = source.read()
    next(records)
    done, total = source.progress()
    assert total == path.stat().st_size and 0 < done <= total
    assert len(list(records)) == 99
    assert source.progress() == (total, total)
