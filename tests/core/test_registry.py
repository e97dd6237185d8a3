import json
import subprocess
import sys
import types

import pytest

from etl_core import PluginError, PluginOptions, Record, Sink, Source, hookimpl
from etl_core.config import parse_config
from etl_core.pipeline import RunOptions, run_pipeline
from etl_core.registry import DEFAULT_PLUGINS, Registry, make_plugin_manager
from tests.conftest import run_etl


class ListSource(Source):
    name = "list"

    class Options(PluginOptions):
        items: list[str]

    def read(self):
        for i, item in enumerate(self.options.items, start=1):
            yield Record({"value": item}, line=i, raw={"value": item})


class UpperSink(Sink):
    name = "collect"
    received: list[str] = []

    async def send(self, record):
        if record.data["value"] == "boom":
            raise RuntimeError("a bug in the sink")
        UpperSink.received.append(record.data["value"].upper())


class MyPlugin:
    @hookimpl
    def register_sources(self):
        return [ListSource]

    @hookimpl
    def register_sinks(self):
        return [UpperSink]


def test_builtins_registered(registry):
    names = {(info.kind, info.name) for info in registry.infos()}
    assert {("sink", "jsonl"), ("sink", "discard")} <= names
    for module in DEFAULT_PLUGINS:
        assert module in {info.provider for info in registry.infos()} or module in ("etl_csv", "etl_transform", "etl_cxone", "etl_metrics")


async def test_plugin_defined_in_test_runs_a_pipeline(tmp_path):
    pm = make_plugin_manager(extra_plugins=(MyPlugin(),))
    data = {
        "pipeline": "t",
        "source": {"type": "list", "items": ["a", "boom", "c"]},
        "sink": {"type": "collect"},
        "output": {"dir": str(tmp_path)},
        "run": {"workers": 2},
    }
    config = parse_config(data, {}, Registry(pm), env={}, source="<test>")
    UpperSink.received = []
    result = await run_pipeline(config, pm, RunOptions(handle_signals=False))
    assert sorted(UpperSink.received) == ["A", "C"]
    assert result.exit_code == 1
    assert result.report["records"] == {"read": 3, "ok": 2, "rejected": 0, "failed": 1, "skipped": 0, "not_processed": 0}
    rejects = (tmp_path / "rejects.csv").read_text()
    assert "RuntimeError: a bug in the sink" in rejects


def test_name_clash_names_both_plugins():
    class Clash:
        @hookimpl
        def register_sinks(self):
            class OtherNull(Sink):
                name = "discard"

            return [OtherNull]

    with pytest.raises(PluginError) as info:
        Registry(make_plugin_manager(extra_plugins=(Clash(),)))
    message = str(info.value)
    assert "'discard' is claimed twice" in message
    assert "etl_files" in message and "OtherNull" in message


def test_wrong_hook_signature_is_a_plugin_error():
    bad = types.ModuleType("bad_plugin")

    @hookimpl
    def register_sinks(unexpected_argument):
        return []

    bad.register_sinks = register_sinks
    with pytest.raises(PluginError, match="bad_plugin|does not match"):
        make_plugin_manager(extra_plugins=(bad,))


def test_unknown_hook_is_a_plugin_error():
    bad = types.ModuleType("typo_plugin")

    @hookimpl
    def register_sink():
        return []

    bad.register_sink = register_sink
    with pytest.raises(PluginError, match="unknown hook"):
        make_plugin_manager(extra_plugins=(bad,))


def test_hook_returning_wrong_type():
    class Wrong:
        @hookimpl
        def register_sources(self):
            return [dict]

    with pytest.raises(PluginError, match="not a Source subclass"):
        Registry(make_plugin_manager(extra_plugins=(Wrong(),)))


def test_entry_point_discovery_with_installed_distribution(tmp_path):
    """Install a real distribution (tests/fixtures/etl-hello-plugin) and use it from the CLI."""
    target = tmp_path / "site"
    fixture = __import__("pathlib").Path(__file__).parents[1] / "fixtures" / "etl-hello-plugin"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(fixture)],
        check=True, capture_output=True, timeout=300,
    )
    env = {"PYTHONPATH": str(target)}
    listed = run_etl("plugins", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {(row["kind"], row["name"]): row for row in json.loads(listed.stdout)}
    assert rows[("source", "hello")]["package"] == "etl-hello-plugin"
    assert rows[("source", "hello")]["version"] == "1.2.3"

    (tmp_path / "p.yaml").write_text(
        "pipeline: hello\nsource:\n  type: hello\n  count: 4\nsink:\n  type: jsonl\n  path: out/hello.jsonl\n"
    )
    ran = run_etl("run", "p.yaml", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    lines = (tmp_path / "out" / "hello.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["greeting"] for line in lines) == [f"hello {i}" for i in range(4)]

    # Its register_commands hook adds `etl hello`, with its own options and exit code.
    assert "greet someone" in run_etl("--help", cwd=tmp_path, env=env).stdout
    greeted = run_etl("hello", "--name", "Ada", cwd=tmp_path, env=env)
    assert (greeted.returncode, greeted.stdout) == (0, "hello Ada\n"), greeted.stderr
    assert run_etl("hello", "--name", "", cwd=tmp_path, env=env).returncode == 1
