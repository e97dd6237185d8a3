"""The test modules ``etl init plugin`` writes, as templates (see :mod:`._scaffold_templates`)."""

from __future__ import annotations

SOURCE_TESTS = '''\
"""Tests of the {{type}} source, with etl's plugin test kit (etl_core.testing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from etl_core import ConfigError
from etl_core.testing import RecordingSink, check_plugin_class, run_pipeline_sync

import {{package}}
from {{package}} import {{Class}}


def run(tmp_path: Path, path: Path) -> tuple[int, RecordingSink, dict]:
    """Read ``path`` with the {{type}} source into a recording sink; return (exit code, sink, report)."""
    sink = RecordingSink()
    result = run_pipeline_sync(
        {"pipeline": "test", "source": {"type": "{{type}}", "path": str(path)}},
        plugins=[{{package}}],
        sink=sink,
        env={},
        tmp_dir=tmp_path / "out",
    )
    return result.exit_code, sink, result.report


def test_the_class_is_well_formed():
    check_plugin_class({{Class}}, {"path": "records.jsonl"})


def test_every_object_becomes_a_record(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "1", "name": "Ada"}\\n\\n{"id": "2", "name": "Grace"}\\n', encoding="utf-8")
    exit_code, sink, report = run(tmp_path, path)
    assert exit_code == 0, report
    by_id = sorted(sink.data(), key=lambda data: data["id"])
    assert by_id == [{"id": "1", "name": "Ada"}, {"id": "2", "name": "Grace"}]


def test_a_line_that_is_not_an_object_is_rejected(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "1"}\\nnot json\\n[1, 2]\\n', encoding="utf-8")
    exit_code, sink, report = run(tmp_path, path)
    assert exit_code == 1  # some records rejected
    assert sink.data() == [{"id": "1"}]
    assert report["records"]["rejected"] == 2
    rejects = (tmp_path / "out" / "rejects.csv").read_text(encoding="utf-8")
    assert "not valid JSON" in rejects and "not a JSON object" in rejects


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="source.path: cannot read"):
        run(tmp_path, tmp_path / "missing.jsonl")
'''

TRANSFORM_TESTS = '''\
"""Tests of the {{type}} transform, with etl's plugin test kit (etl_core.testing)."""

from __future__ import annotations

import pytest
from etl_core import RecordRejected
from etl_core.testing import ListSource, RecordingSink, check_plugin_class, plugin_of, run_pipeline_sync

import {{package}}
from {{package}} import {{Class}}


def test_the_class_is_well_formed():
    check_plugin_class({{Class}}, {"fields": ["name"], "required": True})


def test_spaces_are_tidied():
    transform = {{Class}}({{Class}}.Options(fields=["name", "city"]))
    assert transform.apply({"id": 1, "name": "  Ada   Lovelace "}) == {"id": 1, "name": "Ada Lovelace"}


def test_an_empty_required_field_rejects_the_record():
    transform = {{Class}}({{Class}}.Options(fields=["name"], required=True))
    with pytest.raises(RecordRejected, match="name: required"):
        transform.apply({"name": "   "})


def test_in_a_pipeline(tmp_path):
    sink = RecordingSink()
    result = run_pipeline_sync(
        {
            "pipeline": "test",
            "source": {"type": "list", "items": [{"id": "1", "name": " Ada "}, {"id": "2", "name": ""}]},
            "transforms": [{"type": "{{type}}", "fields": ["name"], "required": True}],
        },
        plugins=[plugin_of(ListSource), {{package}}],
        sink=sink,
        env={},
        tmp_dir=tmp_path,
    )
    assert result.exit_code == 1  # a record was rejected
    assert sink.data() == [{"id": "1", "name": "Ada"}]
    assert "name: required" in (tmp_path / "rejects.csv").read_text(encoding="utf-8")
'''

SINK_TESTS = '''\
"""Tests of the {{type}} sink, with etl's plugin test kit (etl_core.testing).

``httpx.MockTransport`` answers the sink's requests in the test process: no network.
"""

from __future__ import annotations

import json

import httpx
import pytest
from etl_core import ConfigError, FatalError, PermanentError, Record, ThrottledError, TransientError
from etl_core.testing import ListSource, check_plugin_class, check_sink_contract, plugin_of, run_pipeline_sync

import {{package}}
from {{package}} import {{Class}}

OPTIONS = {"url": "https://api.example.com/records", "api_key": "test-api-key"}
RECORD = Record({"id": "1", "name": "Ada"}, line=1)


def answering(status: int, headers: dict[str, str] | None = None) -> {{Class}}:
    """A sink whose every request gets this answer."""
    sink = {{Class}}({{Class}}.Options(**OPTIONS))
    sink.transport = httpx.MockTransport(lambda request: httpx.Response(status, headers=headers, json={}))
    return sink


def test_the_class_is_well_formed():
    check_plugin_class({{Class}}, OPTIONS)


def test_plain_http_is_refused_except_to_localhost():
    with pytest.raises(ConfigError, match="sink.url: must be an https:// URL"):
        {{Class}}({{Class}}.Options(**{**OPTIONS, "url": "http://api.example.com/records"})).check()
    {{Class}}({{Class}}.Options(**{**OPTIONS, "url": "http://127.0.0.1:8080/records"})).check()


@pytest.mark.parametrize(
    ("status", "error"),
    [(422, PermanentError), (404, PermanentError), (500, TransientError), (503, ThrottledError), (429, ThrottledError)],
)
async def test_each_refusal_is_classified(status, error):
    [outcome] = await check_sink_contract(answering(status), RECORD)
    assert isinstance(outcome, error) and outcome.status == status


async def test_a_throttle_passes_on_retry_after():
    [outcome] = await check_sink_contract(answering(429, {"Retry-After": "7"}), RECORD)
    assert isinstance(outcome, ThrottledError) and outcome.retry_after == 7


async def test_a_refused_api_key_stops_the_run():
    [outcome] = await check_sink_contract(answering(401), RECORD)
    assert isinstance(outcome, FatalError)


def test_a_run_sends_every_record(tmp_path, monkeypatch):
    received = []

    def api(request: httpx.Request) -> httpx.Response:
        received.append((request.headers["Authorization"], json.loads(request.content)))
        return httpx.Response(204)

    # The run makes its sink from the config: give the class the test transport.
    monkeypatch.setattr({{Class}}, "transport", httpx.MockTransport(api))
    result = run_pipeline_sync(
        {
            "pipeline": "test",
            "source": {"type": "list", "items": [{"id": "1"}, {"id": "2"}]},
            "sink": {"type": "{{type}}", **OPTIONS},
        },
        plugins=[plugin_of(ListSource), {{package}}],
        env={},
        tmp_dir=tmp_path,
    )
    assert result.exit_code == 0, result.report
    assert sorted(received, key=lambda sent: sent[1]["id"]) == [
        ("Bearer test-api-key", {"id": "1"}),
        ("Bearer test-api-key", {"id": "2"}),
    ]


def test_a_dry_run_describes_every_record_and_sends_nothing(tmp_path):
    result = run_pipeline_sync(
        {
            "pipeline": "test",
            "source": {"type": "list", "items": [{"id": "1"}, {"id": "2"}]},
            "sink": {"type": "{{type}}", **OPTIONS},
        },
        plugins=[plugin_of(ListSource), {{package}}],
        env={},
        dry_run=True,
        tmp_dir=tmp_path,
    )
    assert result.exit_code == 0
    assert result.report["records"]["ok"] == 2
'''

TESTS = {"source": SOURCE_TESTS, "transform": TRANSFORM_TESTS, "sink": SINK_TESTS}
