"""Broken plugins are skipped and reported; ETL_DISABLE_PLUGINS switches plugins off."""

from __future__ import annotations

import io
import json

import pytest

from etl_core._plugin_loading import log_skipped_plugins, normalized_name
from etl_core.cli import main
from etl_core.logging import configure_logging
from etl_core.registry import make_plugin_manager

#: A plugin that adds `etl shaky` and `etl sandbox shaky`, then fails.
COMMANDS_THEN_FAILS = """
from etl_core import Sink, hookimpl


class ShakySink(Sink):
    '''A sink.'''

    name = "shaky"


@hookimpl
def register_sinks():
    return [ShakySink]


@hookimpl
def register_commands(cli):
    cli.add_command("shaky", help="a shaky command").set_defaults(handler=lambda args: 0)
    cli.add_sandbox("shaky", help="a shaky sandbox")
    raise RuntimeError("no terminal for shaky")
"""


def test_a_failing_register_commands_skips_the_plugin_and_its_commands(install_plugin, capsys, monkeypatch):
    monkeypatch.delenv("ETL_DISABLE_PLUGINS", raising=False)
    install_plugin("etl_shaky", COMMANDS_THEN_FAILS, entry_point="shaky")
    assert main(["plugins", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "etl: warning: plugin 'shaky' (etl-shaky 1.0) failed to load and was skipped: register_commands() raised "
        "RuntimeError: no terminal for shaky (ETL_DISABLE_PLUGINS=shaky switches it off)\n"
    )
    [row] = [row for row in json.loads(captured.out) if row["plugin"] == "shaky"]
    assert (row["status"], row["reason"], row["kind"]) == ("broken", "register_commands() raised RuntimeError: no terminal for shaky", None)

    # The command and the sandbox it added before it raised are gone.
    with pytest.raises(SystemExit) as exited:
        main(["shaky"])
    assert exited.value.code == 2 and "invalid choice: 'shaky'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sandbox", "--help"])
    listed = capsys.readouterr().out
    assert "cxone" in listed and "shaky" not in listed


def test_a_config_using_the_type_of_a_plugin_skipped_by_register_commands_names_it(install_plugin, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("ETL_DISABLE_PLUGINS", raising=False)
    install_plugin("etl_shaky", COMMANDS_THEN_FAILS, entry_point="shaky")
    config = tmp_path / "p.yaml"
    config.write_text("pipeline: p\nsource: {type: csv, path: in.csv}\nsink: {type: shaky}\n", encoding="utf-8")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("etl: warning: plugin 'shaky'")
    assert err[1].endswith(
        "sink.type: unknown sink type 'shaky' (installed: cxone, discard, http, jsonl); sink 'shaky' comes from plugin 'shaky' "
        "(etl-shaky 1.0), which failed to load: register_commands() raised RuntimeError: no terminal for shaky"
    )


def test_skipped_plugins_are_logged(install_plugin):
    install_plugin("etl_shaky", "import etl_shaky_missing_dependency\n", entry_point="shaky")
    pm = make_plugin_manager(disabled=["etl_metrics"])
    logs = io.StringIO()
    configure_logging(fmt="json", stream=logs)
    log_skipped_plugins(pm)
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    fields = ("level", "event", "plugin", "package", "version", "reason")
    assert [{k: event[k] for k in fields if k in event} for event in events] == [
        {"level": "warning", "event": "plugin_broken", "plugin": "shaky", "package": "etl-shaky", "version": "1.0",
         "reason": "ModuleNotFoundError: No module named 'etl_shaky_missing_dependency'"},
        {"level": "info", "event": "plugin_disabled", "plugin": "etl_metrics", "package": "etl", "version": pm.disabled[0].version},
    ]


@pytest.mark.parametrize(("given", "normalized"), [("etl_csv", "etl-csv"), (" ETL.Hello--Plugin ", "etl-hello-plugin"), ("shaky", "shaky")])
def test_names_compare_as_distribution_names_do(given, normalized):
    assert normalized_name(given) == normalized
