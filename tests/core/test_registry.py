import json
import sys
import types
from pathlib import Path

import pytest

from etl_core import PluginError, PluginOptions, Record, Sink, Source, hookimpl
from etl_core._plugin_loading import BrokenPlugin, DisabledPlugin
from etl_core.config import parse_config
from etl_core.pipeline import RunOptions, run_pipeline
from etl_core.registry import DEFAULT_PLUGINS, Registry, make_plugin_manager
from tests.conftest import install_distribution, run_etl


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
    target = install_distribution(Path(__file__).parents[1] / "fixtures" / "etl-hello-plugin", tmp_path)
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


# -- broken and disabled plugins ---------------------------------------------------------

SHAKY = """
from etl_core import Sink, Source, hookimpl


class ShakySource(Source):
    '''A source.'''

    name = "shaky_source"


class ShakySink(Sink):
    '''A sink.'''

    name = "shaky"

{hooks}
"""


def shaky(**hooks: str) -> str:
    """The code of a plugin registering ShakySource and ShakySink, with these hook bodies."""
    bodies = {"register_sources": "return [ShakySource]", "register_sinks": "return [ShakySink]", **hooks}
    return SHAKY.format(hooks="\n".join(f"@hookimpl\ndef {hook}():\n    {body}\n" for hook, body in bodies.items()))


def test_an_installed_plugin_that_fails_to_import_is_skipped_and_reported_once(install_plugin):
    install_plugin("etl_shaky", "import etl_shaky_missing_dependency\n", entry_point="shaky")
    warnings: list[str] = []
    pm = make_plugin_manager(report=warnings.append, disabled=())
    assert pm.broken == [
        BrokenPlugin("shaky", "etl-shaky", "1.0", "ModuleNotFoundError: No module named 'etl_shaky_missing_dependency'")
    ]
    assert warnings == [
        "plugin 'shaky' (etl-shaky 1.0) failed to load and was skipped: ModuleNotFoundError: No module named "
        "'etl_shaky_missing_dependency' (ETL_DISABLE_PLUGINS=shaky switches it off)"
    ]
    registry = Registry(pm)
    assert registry.get("source", "csv") is not None  # everything else works
    with pytest.raises(PluginError) as info:
        registry.get("sink", "shaky")
    assert str(info.value) == (
        "unknown sink type 'shaky' (installed: cxone, discard, http, jsonl); plugin 'shaky' (etl-shaky 1.0) failed to load "
        "and may provide it: ModuleNotFoundError: No module named 'etl_shaky_missing_dependency'"
    )
    assert len(warnings) == 1  # building the registry again reports nothing new


def test_a_raising_register_hook_skips_every_class_of_the_plugin(install_plugin):
    install_plugin("etl_shaky", shaky(register_sinks="raise RuntimeError('SHAKY_HOME is not set')"))
    pm = make_plugin_manager(disabled=())
    [broken] = pm.broken
    assert broken.reason == "register_sinks() raised RuntimeError: SHAKY_HOME is not set"
    assert pm.get_plugin("etl_shaky") is None  # unregistered: no other hook of it runs
    registry = Registry(pm)
    assert "shaky_source" not in registry.names("source")
    # Its register_sources answered: it provides that source for sure.
    with pytest.raises(PluginError, match=r"source 'shaky_source' comes from plugin 'etl_shaky' \(etl-shaky 1.0\), "
                       r"which failed to load: register_sinks\(\) raised RuntimeError: SHAKY_HOME is not set$"):
        registry.get("source", "shaky_source")
    with pytest.raises(PluginError, match="failed to load and may provide it"):
        registry.get("sink", "webhook")
    # It has no register_transforms: an unknown transform is only a typo.
    with pytest.raises(PluginError) as info:
        registry.get("transform", "mapp")
    assert "etl_shaky" not in str(info.value)


@pytest.mark.parametrize(
    ("hooks", "reason"),
    [
        ({"register_sinks": "return ShakySink"}, "register_sinks() must return a list of Sink classes"),
        ({"register_sinks": "return [ShakySource]"}, "register_sinks() returned <class 'etl_shaky.ShakySource'>, not a Sink subclass"),
        ({"register_sinks": "return [type('Nameless', (ShakySink,), {'name': ''})]"}, "Nameless has no 'name'"),
        (
            {"register_sinks": "return [type('Discard', (ShakySink,), {'name': 'discard'})]"},
            "sink name 'discard' is claimed twice: by plugin 'etl_files' (etl_files.DiscardSink) and by plugin 'etl_shaky' (etl_shaky.Discard)",
        ),
    ],
    ids=["not-a-list", "wrong-kind", "no-name", "name-taken"],
)
def test_a_register_hook_returning_the_wrong_thing_skips_the_plugin(install_plugin, hooks, reason):
    install_plugin("etl_shaky", shaky(**hooks))
    pm = make_plugin_manager(disabled=())
    assert [(b.name, b.reason) for b in pm.broken] == [("etl_shaky", reason)]
    assert Registry(pm).get("sink", "discard").__module__ == "etl_files"


def test_a_hook_that_does_not_match_its_spec_skips_the_plugin(install_plugin):
    install_plugin("etl_shaky", shaky(register_sinks="return []").replace("def register_sinks()", "def register_sinks(options)"))
    pm = make_plugin_manager(disabled=())
    [broken] = pm.broken
    assert broken.reason.startswith("a hook does not match its specification: Plugin 'etl_shaky' for hook 'register_sinks'; ")
    assert "\n" not in broken.reason
    assert pm.get_plugin("etl_shaky") is None and "shaky_source" not in Registry(pm).names("source")


def test_an_unknown_hook_skips_the_plugin(install_plugin):
    install_plugin("etl_shaky", shaky(register_sink="return [ShakySink]"))
    pm = make_plugin_manager(disabled=())
    module = sys.modules["etl_shaky"]
    assert [broken.reason for broken in pm.broken] == [f"unknown hook 'register_sink' in plugin {module!r}"]
    assert pm.get_plugin("etl_shaky") is None


def test_an_entry_point_name_already_taken_is_skipped(install_plugin):
    install_plugin("etl_shaky", shaky(), entry_point="etl_csv")
    warnings: list[str] = []
    pm = make_plugin_manager(report=warnings.append, disabled=())
    assert [(b.name, b.package, b.reason) for b in pm.broken] == [("etl_csv", "etl-shaky", "its name is already taken by etl (built in)")]
    assert warnings[0].endswith("(ETL_DISABLE_PLUGINS=etl-shaky switches it off)")
    assert Registry(pm).get("source", "csv").__module__.startswith("etl_csv")


def test_a_built_in_that_fails_to_import_is_skipped(monkeypatch):
    monkeypatch.setattr("etl_core.registry.DEFAULT_PLUGINS", ("etl_files", "etl_not_shipped"))
    pm = make_plugin_manager(load_entrypoints=False, disabled=())
    assert [(b.name, b.package, b.reason) for b in pm.broken] == [
        ("etl_not_shipped", "etl", "ModuleNotFoundError: No module named 'etl_not_shipped'")
    ]
    assert Registry(pm).names("sink") == ["discard", "jsonl"]


@pytest.mark.parametrize("name", ["shaky", "etl-shaky", "ETL_Shaky", "etl.shaky"])
def test_a_disabled_plugin_is_not_imported(install_plugin, name):
    install_plugin("etl_shaky", "raise SystemExit('imported!')\n", entry_point="shaky")
    warnings: list[str] = []
    pm = make_plugin_manager(report=warnings.append, disabled=[name])
    assert "etl_shaky" not in sys.modules
    assert pm.disabled == [DisabledPlugin("shaky", "etl-shaky", "1.0")]
    assert pm.broken == [] and warnings == []
    with pytest.raises(PluginError, match=r"; plugins switched off by ETL_DISABLE_PLUGINS: shaky$"):
        Registry(pm).get("sink", "shaky")


def test_etl_disable_plugins_switches_off_built_ins_and_names_the_unknown(monkeypatch):
    monkeypatch.setenv("ETL_DISABLE_PLUGINS", " etl_files, etl_metrics ,,not_installed,etl")
    warnings: list[str] = []
    pm = make_plugin_manager(report=warnings.append)
    assert [plugin.name for plugin in pm.disabled] == ["etl_files", "etl_metrics"]
    assert pm.get_plugin("etl_files") is None and pm.get_plugin("etl_metrics") is None
    assert Registry(pm).names("sink") == ["cxone", "http"]
    # The core (the distribution "etl") is not a plugin: it cannot be switched off.
    assert warnings == ["ETL_DISABLE_PLUGINS names no installed plugin: etl, not_installed"]


def test_plugins_given_in_code_are_never_disabled_nor_skipped():
    import etl_files

    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=(etl_files,), disabled=["etl_files"])
    assert Registry(pm).names("sink") == ["cxone", "discard", "http", "jsonl"]

    class Raising:
        @hookimpl
        def register_sinks(self):
            raise RuntimeError("a bug")

    with pytest.raises(PluginError, match=r"^plugin '\d+': register_sinks\(\) raised RuntimeError: a bug$") as info:
        make_plugin_manager(load_entrypoints=False, extra_plugins=(Raising(),), disabled=())
    assert isinstance(info.value.__cause__, RuntimeError)  # the test shows where it failed
