"""`etl preview`: the real command in a subprocess, on the shipped config and on real files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pydantic
import pytest

from etl_core import PluginOptions, Record, Sink, hookimpl
from etl_core.cli import main
from tests.conftest import ETL, pipeline_config, run_etl
from tests.e2e.conftest import (
    CONTACT_FIELDS,
    SHIPPED_CONFIG,
    SHIPPED_OUT,
    contact_row,
    json_logs,
    read_csv,
    sandbox_env,
    write_rows,
)

SECRET = "preview-secret-5f3a9c"
#: Where the shipped config's sink points: nothing listens there, and nothing may be sent.
OFFLINE_ENV = {
    "CXONE_BASE_URL": "http://127.0.0.1:9",
    "CXONE_TOKEN_URL": "http://127.0.0.1:9/oauth/token",
    "CXONE_CLIENT_ID": "preview-client",
    "CXONE_CLIENT_SECRET": SECRET,
    "CONTACTS_CSV": "data/contacts.csv",
}


def preview(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = run_etl("preview", *args, cwd=cwd, env=OFFLINE_ENV if env is None else env)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    return result


def headings(stdout: str) -> list[str]:
    """The first line of each record the human output shows."""
    return [line for line in stdout.splitlines() if line.startswith("line ")]


def files_under(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def sample_rows(project: Path) -> list[dict[str, str]]:
    return read_csv(project / "data" / "contacts.csv")


def custom_pipeline(tmp_path: Path, rows: list[dict[str, str]], **knobs: Any) -> Path:
    """A pipeline like the shipped one on ``rows``, with ``pipeline_config`` knobs."""
    knobs.setdefault("fields", CONTACT_FIELDS)
    text = pipeline_config(name="preview-e2e", csv=write_rows(tmp_path / "in.csv", rows), out=tmp_path / "out", **knobs)
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shows_the_first_records_of_the_shipped_config_and_writes_nothing(project_copy):
    before = files_under(project_copy)
    result = preview("configs/cxone-contacts.yaml", cwd=project_copy)
    assert result.returncode == 0, result.stderr
    rows = sample_rows(project_copy)
    shown = headings(result.stdout)
    assert [line.split()[1] for line in shown] == [str(n) for n in range(2, 22)]  # 20 by default, header is line 1
    assert all(line.endswith("would be sent") for line in shown)
    first = rows[0]
    assert f"  request  PATCH http://127.0.0.1:9/api/v2/contacts/{first['contact_id']}\n" in result.stdout
    assert f'"email": "{first["email"].strip().lower()}"' in result.stdout  # the mapped body, values shown
    assert "20 shown: 20 would be sent, 0 rejected" in result.stdout
    assert "More records follow" in result.stdout and "out/cxone-contacts/rejects.csv" in result.stdout
    assert files_under(project_copy) == before  # no rejects, report, state or lease
    assert not (project_copy / SHIPPED_OUT).exists()


def test_rejected_rows_show_their_reasons(project_copy):
    result = preview("configs/cxone-contacts.yaml", "-n", "101", cwd=project_copy)
    assert result.returncode == 0, result.stderr
    shown = headings(result.stdout)
    assert len(shown) == 101
    # The sample's first bad row: line 101, an email without "@".
    rejected = [line for line in shown if "rejected" in line]
    assert rejected == ["line 101  rejected (transform validate)"]
    record = result.stdout.split("line 101  rejected")[1].split("\n\n")[0]
    assert '"email": "no-at-sign.example.com"' in record
    assert "  reason  email: not a valid email address (rule: email)" in record
    assert "request" not in record
    assert "101 shown: 100 would be sent, 1 rejected" in result.stdout


def test_json_lines_agree_with_a_dry_run(project_copy):
    result = preview("configs/cxone-contacts.yaml", "-n", "1000", "--json", cwd=project_copy)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(entries) == len(sample_rows(project_copy))
    assert "That is the whole input" in result.stderr  # the summary keeps stdout for the records
    dry = run_etl(
        "run", "configs/cxone-contacts.yaml", "--dry-run", "--log-format", "json", "--log-level", "debug",
        cwd=project_copy, env=OFFLINE_ENV,
    )
    assert dry.returncode == 1, dry.stderr  # the sample holds bad rows
    requests = {e["line"]: e["request"] for e in json_logs(dry.stdout) if e["event"] == "dry_run_request"}
    reasons = {int(r["_line"]): r["_reason"] for r in read_csv(project_copy / SHIPPED_OUT / "dry-run" / "rejects.csv")}
    assert {e["line"]: e["request"] for e in entries if e["outcome"] == "send"} == requests
    assert {e["line"]: e["reason"] for e in entries if e["outcome"] == "rejected"} == reasons
    assert len(reasons) == sum(e["outcome"] == "rejected" for e in entries) > 0


def test_the_key_is_percent_encoded_into_the_path_and_a_bad_one_rejected_by_the_sink(tmp_path):
    rows = [contact_row(0, contact_id="a b/c?d#e"), contact_row(1, contact_id="..")]
    config = custom_pipeline(tmp_path, rows, validate=None, sink_extra="key_format: any")
    result = preview(str(config), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sent, refused = (json.loads(line) for line in result.stdout.splitlines())
    assert sent["outcome"] == "send" and sent["key"] == "a b/c?d#e"
    assert sent["request"]["url"] == "http://127.0.0.1:9/api/v2/contacts/a%20b%2Fc%3Fd%23e"
    assert sent["fields"]["contactId"] == "a b/c?d#e" and sent["input"]["contact_id"] == "a b/c?d#e"
    assert refused["outcome"] == "rejected" and (refused["stage"], refused["plugin"]) == ("sink", "cxone")
    assert refused["reason"] == "contactId: not a valid path segment"
    assert "2 shown: 1 would be sent, 1 rejected" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("count", ["0", "-1", "ten"])
def test_a_records_count_that_is_not_positive_is_a_usage_error(project_copy, count):
    result = preview("configs/cxone-contacts.yaml", "-n", count, cwd=project_copy)
    assert result.returncode == 2
    assert f"etl preview: error: argument -n/--records: '{count}' is not a whole number of 1 or more" in result.stderr
    assert result.stdout == ""


def test_a_config_error_names_the_key_and_line(project_copy):
    env = {name: value for name, value in OFFLINE_ENV.items() if name != "CXONE_BASE_URL"}
    result = preview("configs/cxone-contacts.yaml", cwd=project_copy, env=env)
    assert result.returncode == 2
    lines = (project_copy / "configs" / "cxone-contacts.yaml").read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.strip().startswith("base_url:"))
    assert result.stderr.startswith(f"etl: error: configs/cxone-contacts.yaml:{line}: sink.base_url: ")
    assert "CXONE_BASE_URL is not set" in result.stderr
    assert result.stdout == ""


def test_checkpoints_of_a_real_run_are_ignored(tmp_path, start_sandbox):
    sandbox = start_sandbox()
    rows = [contact_row(i) for i in range(30)]
    env = sandbox_env(sandbox, write_rows(tmp_path / "contacts.csv", rows))
    run = run_etl("run", str(SHIPPED_CONFIG), "--log-format", "json", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    state = tmp_path / SHIPPED_OUT / "state.db"
    written = files_under(tmp_path / SHIPPED_OUT)
    sent = sandbox.stats()
    rerun = run_etl("run", str(SHIPPED_CONFIG), "--dry-run", "--log-format", "json", cwd=tmp_path, env=env)
    assert '"records_skipped": 30' in rerun.stdout  # the checkpoints say: all done

    # Another secret than the sandbox's: preview never asks for a token.
    result = preview(str(SHIPPED_CONFIG), "-n", "5", cwd=tmp_path, env={**env, "CXONE_CLIENT_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in headings(result.stdout)] == ["2", "3", "4", "5", "6"]
    assert f"/api/v2/contacts/{rows[0]['contact_id']}" in result.stdout
    assert "5 shown: 5 would be sent, 0 rejected" in result.stdout
    assert f"checkpoints ({os.path.join('out', 'cxone-contacts', 'state.db')}) were ignored" in result.stdout
    assert sandbox.stats()["requests"] == sent["requests"] and sandbox.stats()["token_requests"] == sent["token_requests"]
    assert {name: data for name, data in files_under(tmp_path / SHIPPED_OUT).items() if not name.startswith("dry-run")} == written
    assert state.exists()


def test_mask_pii_masks_the_preview_as_it_masks_the_logs(tmp_path):
    rows = [contact_row(0, email="Jane.Doe@Example.com", first_name="Jane")]
    config = custom_pipeline(tmp_path, rows, extra="logging:\n  mask_pii: true\n")
    result = preview(str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "jane.doe@example.com" not in result.stdout.lower() and "Jane" not in result.stdout
    assert '"email": "***"' in result.stdout and '"firstName": "***"' in result.stdout
    assert f"/api/v2/contacts/{rows[0]['contact_id']}" in result.stdout  # the key is not personal data


def test_duplicate_keys_rejected_as_a_run_would(tmp_path):
    rows = [contact_row(0), contact_row(1), contact_row(0, city="Elsewhere")]
    config = custom_pipeline(tmp_path, rows, run_extra="duplicate_keys: reject")
    result = preview(str(config), "--json", cwd=tmp_path)
    last = json.loads(result.stdout.splitlines()[-1])
    assert (last["line"], last["outcome"], last["stage"]) == (4, "rejected", "pipeline")
    assert last["reason"] == "duplicate key contactId: first seen at line 2"


def test_control_characters_in_values_never_reach_the_terminal(tmp_path):
    rows = [contact_row(0, city="\x1b[2J\x1b]0;owned\x07City\x9b31m")]
    result = preview(str(custom_pipeline(tmp_path, rows)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(char in result.stdout for char in "\x1b\x07\x9b")
    assert "\\u001b[2J" in result.stdout and "\\u009b31m" in result.stdout


def test_output_cut_short_by_a_pipe_ends_quietly(project_copy):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXONE_")} | OFFLINE_ENV
    process = subprocess.Popen(
        [*ETL, "preview", "configs/cxone-contacts.yaml", "-n", "300"], cwd=project_copy, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith("line 2 ")
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert stderr == ""


class HeaderSink(Sink):
    """Describes its requests with their headers, credentials included."""

    name = "with-headers"

    class Options(PluginOptions):
        api_key: pydantic.SecretStr

    def describe(self, record: Record) -> dict[str, Any]:
        key = self.options.api_key.get_secret_value()
        return {
            "method": "POST",
            "url": f"https://api.example.com/items?api_key={key}",
            "headers": {"Authorization": f"Bearer {key}", "Accept": "application/json"},
            "body": {**record.data, "note": f"sent with {key}"},
        }


class HeaderPlugin:
    @hookimpl
    def register_sinks(self) -> list[type[Sink]]:
        return [HeaderSink]


def test_credentials_in_a_description_are_masked(tmp_path, capsys, monkeypatch):
    key = "header-key-7d41be"
    config = custom_pipeline(
        tmp_path, [contact_row(0)], sink="with-headers", sink_options={"api_key": "${HEADER_KEY}"}
    )
    monkeypatch.setenv("HEADER_KEY", key)
    for args in ([], ["--json"]):
        assert main(["preview", str(config), *args], extra_plugins=(HeaderPlugin(),)) == 0
        out, err = capsys.readouterr()
        assert key not in out + err
        assert '"Authorization": "***"' in out and '"Accept": "application/json"' in out
        assert "api_key=***" in out and '"note": "sent with ***"' in out
