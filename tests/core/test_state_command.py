"""`etl state`: reading the config, usage errors, messages and formatting (in process).

The end-to-end flows (state left by real runs, a rerun after `clear`, the lease) are in
tests/e2e/test_state_cli.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from etl_core import Outcome
from etl_core.cli import main
from etl_core.state import Checkpoint, StateStore
from tests.conftest import ETL, pipeline_config


def write_config(tmp_path: Path, *, extra: str = "", sink_options: dict[str, str] | None = None, out: str | None = None) -> Path:
    path = tmp_path / "pipeline.yaml"
    text = pipeline_config(
        name="state-cmd", csv=tmp_path / "contacts.csv", out=out or tmp_path / "out", fields={"contactId": "contact_id"},
        sink="jsonl", sink_options=sink_options or {"path": json.dumps(str(tmp_path / "sent.jsonl"))}, extra=extra,
    )
    if out is not None:  # a ${VAR}: unquoted
        text = text.replace(json.dumps(out), out)
    path.write_text(text, encoding="utf-8")
    return path


def write_state(path: Path, keys: list[str], *, pipeline: str = "state-cmd") -> None:
    store = StateStore(str(path), pipeline, "run-1")
    store.start()
    for key in keys:
        store.record(Checkpoint(key, "hash", Outcome.OK, False, 200, 1, None, 2))
    store.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def etl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_clear_needs_keys_all_or_quota_and_not_keys_with_all(tmp_path, capsys):
    config = write_config(tmp_path)
    state = tmp_path / "out" / "state.db"
    write_state(state, ["a", "b"])
    before = digest(state)
    assert etl(capsys, "state", "clear", str(config)) == (
        2, "", "etl: error: say what to forget: one or more keys, --all (every checkpoint) or --quota (the remembered quota)\n"
    )
    assert etl(capsys, "state", "clear", str(config), "a", "--all") == (2, "", "etl: error: give keys or --all, not both\n")
    assert digest(state) == before


def test_state_without_an_action_shows_its_help(capsys):
    code, out, err = etl(capsys, "state")
    assert code == 2 and out == ""
    assert err.startswith("usage: etl state ") and "show" in err and "list" in err and "clear" in err


def test_before_the_first_run_nothing_is_shown_listed_cleared_or_created(tmp_path, capsys):
    config = write_config(tmp_path)
    out = tmp_path / "out"
    expected = f"no state yet: no run has written {out / 'state.db'}\n"
    assert etl(capsys, "state", "show", str(config)) == (0, expected, "")
    assert etl(capsys, "state", "list", str(config)) == (0, expected, "")
    assert etl(capsys, "state", "list", str(config), "--json") == (0, "", expected)  # stdout stays JSON Lines
    code, shown, _ = etl(capsys, "state", "show", str(config), "--json")
    document = json.loads(shown)
    assert code == 0 and document["exists"] is False and document["records"]["total"] == 0
    assert document["last_run"] is None and document["quotas"] == []
    assert etl(capsys, "state", "clear", str(config), "--all") == (0, f"nothing to forget: {expected}", "")
    assert not out.exists()

    out.mkdir()  # an output directory, but no state file in it
    assert etl(capsys, "state", "clear", str(config), "a") == (0, f"nothing to forget: {expected}", "")
    assert not (out / "state.db").exists()


def test_a_pipeline_that_keeps_no_state_is_told_so(tmp_path, capsys):
    config = write_config(tmp_path, extra="state:\n  enabled: false\n")
    code, out, err = etl(capsys, "state", "show", str(config))
    line = config.read_text(encoding="utf-8").splitlines().index("  enabled: false") + 1
    assert (code, out) == (2, "")
    assert err == f"etl: error: {config}:{line}: state.enabled: is false: runs of this pipeline keep no state\n"

    config.write_text(config.read_text(encoding="utf-8").replace("key: contactId\n", ""), encoding="utf-8")
    code, out, err = etl(capsys, "state", "clear", str(config), "--all")
    assert (code, out) == (2, "")
    assert err == f"etl: error: {config}: key: is not set, so runs of this pipeline keep no state (checkpoints are per key)\n"


def test_only_the_core_settings_need_their_variables(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STATE_CMD_SECRET", raising=False)
    monkeypatch.delenv("STATE_CMD_OUT", raising=False)
    # The sink's variable is unset: the state is read all the same.
    config = write_config(tmp_path, sink_options={"path": "${STATE_CMD_SECRET}"})
    write_state(tmp_path / "out" / "state.db", ["a"])
    code, out, err = etl(capsys, "state", "show", str(config), "--json")
    assert (code, err) == (0, "") and json.loads(out)["records"]["delivered"] == 1

    # The output directory's variable is needed, and named.
    config = write_config(tmp_path, out="${STATE_CMD_OUT}")
    code, out, err = etl(capsys, "state", "list", str(config))
    assert (code, out) == (2, "")
    assert "output.dir: environment variable STATE_CMD_OUT is not set" in err
    monkeypatch.setenv("STATE_CMD_OUT", str(tmp_path / "out"))
    code, out, _ = etl(capsys, "state", "list", str(config))
    assert code == 0 and out.splitlines()[1].split()[:2] == ["a", "delivered"]


def test_a_damaged_state_file_is_a_config_error_naming_it(tmp_path, capsys):
    config = write_config(tmp_path)
    state = tmp_path / "out" / "state.db"
    state.parent.mkdir()
    state.write_bytes(b"\x00garbage" * 1000)
    for action in (["show"], ["list"], ["clear", "--all"]):
        code, out, err = etl(capsys, "state", action[0], str(config), *action[1:])
        assert (code, out) == (2, ""), action
        assert err.startswith(f"etl: error: state.path: the state file {state} cannot be "), err
        assert "it is damaged or not a state file" in err


def test_keys_from_the_input_cannot_drive_the_terminal(tmp_path, capsys):
    config = write_config(tmp_path)
    write_state(tmp_path / "out" / "state.db", ["plain", "evil\x1b[2J\x07"])
    code, out, _ = etl(capsys, "state", "list", str(config))
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b[2J\\x07  delivered" in out
    code, out, _ = etl(capsys, "state", "list", str(config), "--json")
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["evil\x1b[2J\x07", "plain"]


def test_a_pipeline_under_another_name_in_the_file_is_pointed_at(tmp_path, capsys):
    config = write_config(tmp_path)
    write_state(tmp_path / "out" / "state.db", ["a"], pipeline="old-name")
    code, out, _ = etl(capsys, "state", "show", str(config))
    assert code == 0 and "checkpoints: none (the file has those of pipeline 'old-name')" in out.splitlines()


def test_a_reader_that_stops_early_ends_the_listing_quietly(tmp_path):
    config = write_config(tmp_path)
    write_state(tmp_path / "out" / "state.db", [f"key-{i:05d}" for i in range(5000)])  # more than a pipe holds
    with subprocess.Popen([*ETL, "state", "list", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as etl_list:
        assert etl_list.stdout is not None and etl_list.stderr is not None
        assert etl_list.stdout.readline().startswith("KEY ")
        etl_list.stdout.close()  # like `| head -1`
        errors = etl_list.stderr.read()
        assert etl_list.wait(timeout=60) == 0, errors
    assert errors == ""
