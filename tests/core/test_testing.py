"""The plugin test kit (etl_core.testing), tested with itself."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
import trio

import etl_core
import etl_files
from etl_core import (
    ConfigError,
    FatalError,
    PermanentError,
    PluginOptions,
    Record,
    RecordRejected,
    SendResult,
    Sink,
    Source,
    ThrottledError,
    Transform,
    TransientError,
)
from etl_core.testing import (
    ListSource,
    RecordingSink,
    assert_classifies,
    check_plugin_class,
    check_sink_contract,
    plugin_of,
    run_pipeline_from_dict,
    run_pipeline_sync,
)
from etl_csv import CsvSource
from etl_cxone import CxoneSink
from etl_cxone.sandbox import SandboxSettings, contact_id, open_sandbox
from etl_files import JsonlSink
from etl_transform import MapTransform, ValidateTransform

PEOPLE = [
    {"id": "1", "name": " Ada ", "email": "ada@example.com"},
    {"id": "2", "name": "Grace", "email": "grace@example.com"},
    {"id": "3", "name": "Linus"},  # no email: the map transform rejects it
    {"id": "4", "name": "Barbara", "email": "barbara@example.com"},
]
MAP = {
    "type": "map",
    "fields": {"id": "id", "name": {"from": "name", "normalize": ["strip", "upper"]}, "email": "email"},
}


def pipeline(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "pipeline": "kit",
        "key": "id",
        "source": {"type": "list", "items": PEOPLE},
        "transforms": [MAP],
        "sink": {"type": "recording"},
        "run": {"workers": 3, "retry": {"backoff_base": 0.001, "backoff_cap": 0.01}, "rate": {"adaptive": False}},
    }
    config.update(overrides)
    return config


def read_rejects(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- running pipelines -----------------------------------------------------------------


async def test_list_source_map_recording_sink(tmp_path: Path) -> None:
    sink = RecordingSink()
    result = await run_pipeline_from_dict(pipeline(), plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path)

    assert result.exit_code == 1  # one record rejected by the transform
    assert result.report["records"] == {"read": 4, "ok": 3, "rejected": 1, "failed": 0, "skipped": 0, "not_processed": 0}
    assert sorted(sink.data(), key=lambda d: d["id"]) == [
        {"id": "1", "name": "ADA", "email": "ada@example.com"},
        {"id": "2", "name": "GRACE", "email": "grace@example.com"},
        {"id": "4", "name": "BARBARA", "email": "barbara@example.com"},
    ]
    assert {record.key: record.line for record in sink.received} == {"1": 1, "2": 2, "4": 4}
    assert sink.attempts == {"1": 1, "2": 1, "4": 1}
    assert sink.closed and sink.context is not None and sink.context.pipeline == "kit"
    # Its own storage, apart from any other instance's.
    assert RecordingSink().received == [] and RecordingSink().attempts == {}

    rows = read_rejects(tmp_path / "rejects.csv")
    assert [(r["_line"], r["_stage"], r["_plugin"], r["name"]) for r in rows] == [("3", "transform", "map", "Linus")]
    assert "email" in rows[0]["_reason"]


async def test_configured_failures_land_in_rejects(tmp_path: Path) -> None:
    sink = RecordingSink(RecordingSink.Options(fail={"2": "permanent", "4": "transient"}))
    config = pipeline(transforms=[])
    config["run"]["retry"]["max_attempts"] = 3
    result = await run_pipeline_from_dict(config, plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path)

    assert result.exit_code == 1
    assert result.report["records"]["ok"] == 2 and result.report["records"]["failed"] == 2
    assert sorted(r.key for r in sink.received) == ["1", "3"]
    assert sink.attempts["2"] == 1  # permanent: not retried
    assert sink.attempts["4"] == 3  # transient: retried up to max_attempts
    rows = {r["_key"]: r for r in read_rejects(tmp_path / "rejects.csv")}
    assert rows["2"]["_status"] == "400" and rows["2"]["_retryable"] == "no" and rows["2"]["_stage"] == "sink"
    assert rows["4"]["_status"] == "503" and rows["4"]["_retryable"] == "yes" and rows["4"]["_attempts"] == "3"
    assert "recording sink: permanent failure of 2" in rows["2"]["_reason"]


async def test_scripted_failures_then_success(tmp_path: Path) -> None:
    sink = RecordingSink(
        failures={
            "1": [ThrottledError("slow down", status=429, retry_after=0), TransientError("oops", status=502)],
            "2": PermanentError("no such contact", status=404, detail='{"error": "not found"}'),
        }
    )
    result = await run_pipeline_from_dict(
        pipeline(transforms=[]), plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path
    )
    assert result.report["records"]["ok"] == 3 and result.report["records"]["failed"] == 1
    assert sink.attempts["1"] == 3 and sink.attempts["2"] == 1
    assert result.report["requests"]["by_status"] == {"200": 3, "404": 1, "429": 1, "502": 1}
    assert result.report["requests"]["throttled"] == 1
    (row,) = read_rejects(tmp_path / "rejects.csv")
    assert (row["_key"], row["_status"], row["_detail"]) == ("2", "404", '{"error": "not found"}')


async def test_fatal_failure_aborts_the_run(tmp_path: Path) -> None:
    sink = RecordingSink(failures={"1": FatalError("credentials refused")})
    config = pipeline(transforms=[], run={"workers": 1})
    result = await run_pipeline_from_dict(config, plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path)
    assert result.exit_code == 1
    assert result.report["aborted"] == "credentials refused"


async def test_records_without_a_key_are_identified_by_line(tmp_path: Path) -> None:
    sink = RecordingSink()
    config = pipeline(transforms=[], key=None)
    result = await run_pipeline_from_dict(config, plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path)
    assert result.exit_code == 0
    assert sink.attempts == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert sorted(d["id"] for d in sink.data()) == ["1", "2", "3", "4"]


async def test_a_sink_made_from_the_config_records_too(tmp_path: Path) -> None:
    # The config alone names the recording sink: the run makes the instance, and the
    # configured failure shows in the report.
    config = pipeline(transforms=[], sink={"type": "recording", "fail": {"3": "permanent"}})
    result = await run_pipeline_from_dict(config, plugins=[plugin_of(ListSource, RecordingSink)], env={}, tmp_dir=tmp_path)
    assert result.report["records"]["ok"] == 3 and result.report["records"]["failed"] == 1


async def test_a_sink_instance_whose_options_have_required_keys(tmp_path: Path) -> None:
    # The jsonl sink requires `path`: given as an instance, the config leaves its section out.
    out = tmp_path / "people.jsonl"
    sink = JsonlSink(JsonlSink.Options(path=str(out)))
    result = await run_pipeline_from_dict(
        {**pipeline(), "sink": {"type": "jsonl"}}, plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path
    )
    assert result.report["records"]["ok"] == 3
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["1", "2", "4"]


async def test_default_output_dir_is_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # anything written relative to the cwd would land here
    sink = RecordingSink()
    config = pipeline()
    result = await run_pipeline_from_dict(config, plugins=[plugin_of(ListSource)], sink=sink, env={})
    report = Path(result.report["files"]["report"])
    assert report.exists() and not report.is_relative_to(tmp_path)
    assert json.loads(report.read_text())["run_id"] == result.report["run_id"]
    assert list(tmp_path.iterdir()) == []
    assert "output" not in config  # the caller's dict is left alone


async def test_output_dir_of_the_dict_wins(tmp_path: Path) -> None:
    sink = RecordingSink()
    config = pipeline(output={"dir": str(tmp_path / "mine")})
    result = await run_pipeline_from_dict(config, plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path / "other")
    assert Path(result.report["files"]["report"]).parent == tmp_path / "mine"


async def test_env_interpolation(tmp_path: Path) -> None:
    sink = RecordingSink()
    config = pipeline(transforms=[{"type": "map", "fields": {"id": "id", "team": {"value": "${TEAM}"}}}])
    await run_pipeline_from_dict(config, plugins=[plugin_of(ListSource)], sink=sink, env={"TEAM": "blue"}, tmp_dir=tmp_path)
    assert {d["team"] for d in sink.data()} == {"blue"}
    with pytest.raises(ConfigError, match="TEAM is not set"):
        await run_pipeline_from_dict(config, plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path)


async def test_dry_run_sends_nothing(tmp_path: Path) -> None:
    sink = RecordingSink()
    result = await run_pipeline_from_dict(
        pipeline(), plugins=[plugin_of(ListSource)], sink=sink, env={}, dry_run=True, tmp_dir=tmp_path
    )
    assert result.report["dry_run"] is True and result.report["records"]["ok"] == 3
    assert sink.received == [] and sink.attempts == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sink": {"type": "recording", "fial": {}}}, r"sink\.fial: unknown key"),
        ({"sink": {"type": "nope"}}, r"sink\.type: unknown sink type 'nope'"),
        ({"source": {"type": "list"}}, r"source\.items: required key is missing"),
        ({"run": {"workers": 0}}, r"run\.workers"),
        ({"sink": {"type": "recording", "fail": {"1": "sometimes"}}}, r"sink\.fail\.1"),
    ],
)
async def test_config_mistakes_are_config_errors(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await run_pipeline_from_dict(
            pipeline(**change), plugins=[plugin_of(ListSource, RecordingSink)], env={}, tmp_dir=tmp_path
        )


def test_run_pipeline_sync(tmp_path: Path) -> None:
    sink = RecordingSink()
    result = run_pipeline_sync(pipeline(transforms=[]), plugins=[plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path)
    assert result.exit_code == 0
    assert len(sink.received) == 4


async def test_built_in_or_installed_modules_may_be_passed_again(tmp_path: Path) -> None:
    sink = RecordingSink()
    result = await run_pipeline_from_dict(
        pipeline(), plugins=[etl_files, plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path
    )
    assert result.report["records"]["ok"] == 3


def test_plugin_of_refuses_other_classes() -> None:
    with pytest.raises(TypeError, match="not a Source, Transform or Sink"):
        plugin_of(ListSource, dict)  # type: ignore[arg-type]


def test_list_source_progress() -> None:
    source = ListSource(ListSource.Options(items=[{"a": 1}, {"a": 2}]))
    assert source.progress() == (0, 2)
    records = list(source.read())
    assert [(r.line, r.data) for r in records] == [(1, {"a": 1}), (2, {"a": 2})]
    assert source.progress() == (2, 2)


# -- sink contract ---------------------------------------------------------------------


class SloppySink(Sink):
    """Lets a library error escape instead of classifying it."""

    name = "sloppy"

    async def send(self, record: Record) -> SendResult:
        if record.data.get("bad"):
            raise ValueError("invalid literal for int() with base 10: 'x'")
        return SendResult(status=200)


class TidySink(Sink):
    """Classifies every outcome the way a real HTTP sink does."""

    name = "tidy"

    async def send(self, record: Record) -> SendResult | None:
        await trio.lowlevel.checkpoint()
        answer = record.data["answer"]
        if answer == 404:
            raise PermanentError("contact not found", status=404)
        if answer == 429:
            raise ThrottledError("rate limited", status=429, retry_after=2.0)
        if answer == 503:
            raise TransientError("service unavailable", status=503)
        if answer == 401:
            raise FatalError("credentials refused")
        return SendResult(status=answer) if answer else None

    def describe(self, record: Record) -> dict[str, Any]:
        if record.data["answer"] == 400:
            raise RecordRejected("id: not a UUID")
        return {"method": "PATCH", "data": record.data}


def rec(**data: Any) -> Record:
    return Record(data, line=2)


async def test_assert_classifies_catches_a_bare_value_error() -> None:
    sink = SloppySink(SloppySink.Options())
    with pytest.raises(AssertionError, match=r"unclassified builtins\.ValueError"):
        await assert_classifies(sink.send(rec(bad=True)))
    assert await assert_classifies(sink.send(rec()), SendResult, status=200) == SendResult(status=200)


async def test_assert_classifies_checks_the_expected_outcome() -> None:
    sink = TidySink(TidySink.Options())
    exc = await assert_classifies(sink.send(rec(answer=429)), ThrottledError, status=429)
    assert isinstance(exc, ThrottledError) and exc.retry_after == 2.0
    # A subclass counts: a throttle is a transient failure.
    await assert_classifies(lambda: sink.send(rec(answer=429)), TransientError)
    await assert_classifies(sink.send(rec(answer=404)), PermanentError, status=404)
    await assert_classifies(sink.send(rec(answer=401)), FatalError)
    assert await assert_classifies(sink.send(rec(answer=None)), SendResult) is None
    with pytest.raises(AssertionError, match="expected PermanentError, got TransientError"):
        await assert_classifies(sink.send(rec(answer=503)), PermanentError)
    with pytest.raises(AssertionError, match="expected a delivery, the sink raised PermanentError"):
        await assert_classifies(sink.send(rec(answer=404)), SendResult)
    with pytest.raises(AssertionError, match="expected ThrottledError, got a delivery"):
        await assert_classifies(sink.send(rec(answer=200)), ThrottledError)
    with pytest.raises(AssertionError, match="expected status 410, got 404"):
        await assert_classifies(sink.send(rec(answer=404)), status=410)


async def test_assert_classifies_checks_the_error_fields() -> None:
    async def returns_a_dict() -> Any:
        return {"status": 200}

    async def raises(exc: BaseException) -> None:
        raise exc

    with pytest.raises(AssertionError, match="must return a SendResult or None"):
        await assert_classifies(returns_a_dict())
    with pytest.raises(AssertionError, match="retry_after -1"):
        await assert_classifies(raises(ThrottledError("slow down", retry_after=-1)))
    with pytest.raises(AssertionError, match="retry_after inf"):
        await assert_classifies(raises(ThrottledError("slow down", retry_after=float("inf"))))
    with pytest.raises(AssertionError, match="status '404'"):
        await assert_classifies(raises(PermanentError("gone", status="404")))  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="empty reason"):
        await assert_classifies(raises(TransientError("")))


async def test_check_sink_contract() -> None:
    outcomes = await check_sink_contract(
        TidySink(TidySink.Options()), rec(answer=200), rec(answer=404), rec(answer=429), rec(answer=400)
    )
    assert [type(o).__name__ for o in outcomes] == ["SendResult", "PermanentError", "ThrottledError", "SendResult"]
    with pytest.raises(AssertionError, match="unclassified builtins.ValueError"):
        await check_sink_contract(SloppySink(SloppySink.Options()), rec(), rec(bad=True))


async def test_check_sink_contract_closes_the_sink_and_checks_describe() -> None:
    class Describer(TidySink):
        """Describes requests wrongly."""

        closed = False

        def describe(self, record: Record) -> Any:
            return "PATCH /contacts"

        async def aclose(self) -> None:
            Describer.closed = True

    with pytest.raises(AssertionError, match="describe\\(\\) returned 'PATCH /contacts'"):
        await check_sink_contract(Describer(Describer.Options()), rec(answer=200))
    assert Describer.closed


async def test_check_sink_contract_against_a_local_server() -> None:
    async with open_sandbox(SandboxSettings(seed_count=10)) as sandbox:
        sink = CxoneSink(
            CxoneSink.Options(
                base_url=sandbox.url,
                token_url=sandbox.url + "/oauth/token",
                client_id="sandbox-client",
                client_secret=pydantic.SecretStr("sandbox-secret"),
            )
        )
        known = Record({"contactId": contact_id(1), "email": "a@example.com"}, line=2, key=contact_id(1))
        unknown_id = "00000000-0000-4000-8000-000000000000"
        unknown = Record({"contactId": unknown_id, "email": "b@example.com"}, line=3, key=unknown_id)
        ok, missing = await check_sink_contract(sink, known, unknown)
    assert isinstance(ok, SendResult) and ok.status in (200, 204)
    assert isinstance(missing, PermanentError) and missing.status == 404


# -- plugin classes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [ListSource, RecordingSink, CsvSource, MapTransform, ValidateTransform, JsonlSink, CxoneSink]
)
def test_well_formed_plugin_classes_pass(cls: type) -> None:
    check_plugin_class(cls)


def test_check_plugin_class_with_example_options() -> None:
    check_plugin_class(ListSource, {"items": [{"a": 1}]})
    with pytest.raises(AssertionError, match="example options do not validate"):
        check_plugin_class(ListSource, {"items": "abc"})


def test_check_plugin_class_lists_every_problem() -> None:
    class PlainModel(pydantic.BaseModel):
        path: str = "x"

    class Broken(Source):
        name = "null"
        Options = PlainModel  # type: ignore[assignment]

        async def read(self):  # type: ignore[override]
            yield Record({}, line=1)

    with pytest.raises(AssertionError) as info:
        check_plugin_class(Broken)
    message = str(info.value)
    assert "`name` 'null' would not be read back" in message
    assert "no docstring" in message
    assert "`Options` must be a subclass of etl_core.PluginOptions" in message
    assert "`read` must be a plain (not async) method" in message


def test_check_plugin_class_finds_bad_defaults_and_missing_methods() -> None:
    class Lazy(Transform):
        """Forgot to implement apply, and its defaults are wrong."""

        name = "lazy"

        class Options(PluginOptions):
            workers: int = pydantic.Field("many")  # type: ignore[assignment]
            ratio: float = pydantic.Field(2.0, le=1)

    with pytest.raises(AssertionError) as info:
        check_plugin_class(Lazy)
    message = str(info.value)
    assert "`apply` is not implemented" in message
    assert "default of `workers` ('many') is not valid" in message
    assert "default of `ratio` (2.0) is not valid" in message


def test_check_plugin_class_finds_a_sync_send_and_an_open_extra() -> None:
    class Loose(Sink):
        """Accepts unknown keys and sends synchronously."""

        name = "loose"

        class Options(PluginOptions):
            model_config = pydantic.ConfigDict(extra="allow")

        def send(self, record: Record) -> None:  # type: ignore[override]
            return None

    with pytest.raises(AssertionError) as info:
        check_plugin_class(Loose)
    assert "`send` must be an async method" in str(info.value)
    assert "must forbid unknown keys" in str(info.value)


def test_kit_is_not_part_of_the_public_api() -> None:
    assert "testing" not in etl_core.__all__
    assert not any(name in etl_core.__all__ for name in ("ListSource", "RecordingSink", "run_pipeline_from_dict"))


# -- sinks that send in batches --------------------------------------------------------


class BulkSink(Sink):
    """Upserts records in batches; record ``answer`` says what the server answers for it."""

    name = "bulk_test"

    def batching(self) -> etl_core.Batching | None:
        return etl_core.Batching(max_records=50)

    async def send_batch(self, records: Any) -> Any:
        if any(record.data.get("answer") == 413 for record in records):
            raise etl_core.BatchRejected("HTTP 413: body too large", status=413)
        return [
            PermanentError("HTTP 422: bad phone", status=422) if record.data.get("answer") == 422 else SendResult(status=200)
            for record in records
        ]


async def test_check_sink_contract_sends_a_batching_sink_one_batch() -> None:
    outcomes = await check_sink_contract(BulkSink(BulkSink.Options()), rec(answer=200), rec(answer=422))
    assert [type(o).__name__ for o in outcomes] == ["SendResult", "PermanentError"]
    refused = await check_sink_contract(BulkSink(BulkSink.Options()), rec(answer=200), rec(answer=413))
    assert [type(o).__name__ for o in refused] == ["BatchRejected", "BatchRejected"]


async def test_check_sink_contract_finds_a_batch_answer_that_does_not_fit() -> None:
    class Short(BulkSink):
        """Answers one outcome whatever the batch."""

        async def send_batch(self, records: Any) -> Any:
            return [SendResult()]

    with pytest.raises(AssertionError, match="must return one outcome per record"):
        await check_sink_contract(Short(Short.Options()), rec(), rec())


def test_check_plugin_class_accepts_a_sink_with_send_batch_only() -> None:
    check_plugin_class(BulkSink)

    class Idle(Sink):
        """Implements neither send nor send_batch."""

        name = "idle"

    with pytest.raises(AssertionError, match="`send` is not implemented \\(nor `send_batch`"):
        check_plugin_class(Idle)
