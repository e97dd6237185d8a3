"""`etl state show|list|clear` on the state real runs left: the CXone sandbox, or a JSON Lines file.

Each test runs `etl run` in a subprocess to make the state, then the `etl state` command
the way a user does, and checks what it prints and what the next run sends.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from etl_core._lease import take_lease
from etl_core.state import StateStore
from etl_cxone.sandbox import contact_id
from tests.conftest import pipeline_config, run_etl
from tests.e2e.conftest import CONTACT_FIELDS, contact_row, read_report, sandbox_env, write_rows

#: Five contacts, written to a JSON Lines file (no network).
JSONL_ROWS = [contact_row(i) for i in range(5)]


def jsonl_job(tmp_path: Path, **config: Any) -> tuple[Path, Path]:
    """A csv -> jsonl pipeline over JSONL_ROWS; returns its config and its output directory."""
    out = tmp_path / "out"
    config.setdefault("out", out)
    text = pipeline_config(
        name="state-jsonl",
        csv=write_rows(tmp_path / "contacts.csv", JSONL_ROWS),
        fields=CONTACT_FIELDS,
        sink="jsonl",
        sink_options={"path": json.dumps(str(tmp_path / "sent.jsonl"))},
        **config,
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path, out


def sent_keys(tmp_path: Path) -> list[str]:
    """The keys the jsonl sink wrote, in order (appended by every run)."""
    lines = (tmp_path / "sent.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["contactId"] for line in lines]


def etl(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    done = run_etl(*args, cwd=tmp_path, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def run_job(tmp_path: Path, config: Path, expected: int = 0, env: dict[str, str] | None = None) -> None:
    done = etl(tmp_path, "run", str(config), "--log-format", "json", "--no-progress", env=env)
    assert done.returncode == expected, done.stderr + done.stdout[-3000:]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_show_and_list_tell_each_outcome_of_a_sandbox_run_without_the_credentials(tmp_path, start_sandbox):
    good = [contact_row(i) for i in range(7)]
    unknown = [contact_row(0, contact_id=contact_id(900_000 + k)) for k in range(2)]  # 404: refused for good
    failing = contact_row(7)  # always 500: retryable once its attempts are spent
    sandbox = start_sandbox(failing_ids=(failing["contact_id"],))
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        pipeline_config(
            name="state-e2e", csv=write_rows(tmp_path / "contacts.csv", [*good, *unknown, failing]),
            out=tmp_path / "out", fields=CONTACT_FIELDS, run_extra="retry:\n  max_attempts: 2\n  backoff_base: 0.01",
        ),
        encoding="utf-8",
    )
    run_job(tmp_path, config, expected=1, env=sandbox_env(sandbox))
    report = read_report(tmp_path / "out")
    state_file = tmp_path / "out" / "state.db"
    before = digest(state_file)

    # The CXONE_* variables of the sink are not set now: the state needs none of them.
    shown = etl(tmp_path, "state", "show", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["records"] == {"total": 10, "delivered": 7, "refused": 2, "retryable": 1}
    assert summary["exists"] is True and summary["state_file"] == str(state_file)
    assert summary["last_run"]["run_id"] == summary["last_checkpoint"]["run_id"] == report["run_id"]
    assert summary["last_run"]["records"] == report["records"] and summary["quotas"] == []

    text = etl(tmp_path, "state", "show", str(config)).stdout
    assert re.search(r"^checkpoints: 10$", text, re.MULTILINE), text
    for label, count in (("delivered", 7), ("refused for good", 2), ("retryable", 1)):
        assert re.search(rf"^  {label} +{count}  the next run ", text, re.MULTILINE), text
    assert f"last run: {report['run_id']}, " in text and "exit code 1" in text

    refused = [json.loads(line) for line in etl(tmp_path, "state", "list", str(config), "--outcome", "refused", "--json").stdout.splitlines()]
    assert [r["key"] for r in refused] == sorted(r["contact_id"] for r in unknown)
    assert {(r["outcome"], r["status"], r["attempts"]) for r in refused} == {("refused", 404, 1)}
    assert all("404" in r["reason"] and r["run_id"] == report["run_id"] for r in refused)

    table = etl(tmp_path, "state", "list", str(config), "--outcome", "retryable").stdout.splitlines()
    assert table[0].split() == ["KEY", "OUTCOME", "STATUS", "ATTEMPTS", "LINE", "CHANGED", "REASON"]
    assert len(table) == 2 and table[1].split()[:5] == [failing["contact_id"], "retryable", "500", "2", "11"]

    every = sorted(r["contact_id"] for r in [*good, *unknown, failing])
    first = etl(tmp_path, "state", "list", str(config), "--limit", "3", "--json").stdout.splitlines()
    assert [json.loads(line)["key"] for line in first] == every[:3]

    # Looking changed nothing.
    assert digest(state_file) == before


def test_clearing_a_key_makes_the_next_run_send_exactly_that_record_again(tmp_path):
    config, out = jsonl_job(tmp_path)
    run_job(tmp_path, config)
    keys = [row["contact_id"] for row in JSONL_ROWS]
    assert sorted(sent_keys(tmp_path)) == sorted(keys)

    cleared = etl(tmp_path, "state", "clear", str(config), keys[2], "no-such-key")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.splitlines() == [
        f"forgot 1 of 2 checkpoints of pipeline 'state-jsonl' ({out / 'state.db'}): the next run sends those records again",
        f"  forgot {keys[2]}",
        "  no checkpoint of no-such-key: nothing to forget",
    ]
    listed = [json.loads(line)["key"] for line in etl(tmp_path, "state", "list", str(config), "--json").stdout.splitlines()]
    assert sorted(listed) == sorted(set(keys) - {keys[2]})

    run_job(tmp_path, config)
    assert sent_keys(tmp_path)[len(keys) :] == [keys[2]]
    assert read_report(tmp_path / "out")["records"]["skipped"] == len(keys) - 1


def test_clear_all_and_the_quota(tmp_path):
    config, out = jsonl_job(tmp_path)
    run_job(tmp_path, config)
    # A sink that names its destination has its quota kept like this at the end of a run.
    store = StateStore(str(out / "state.db"), "state-jsonl", "an-earlier-run")
    store.remember_quota("PATCH https://api.example/contacts as client-1", 12.5, 20.0)
    store.close()

    shown = json.loads(etl(tmp_path, "state", "show", str(config), "--json").stdout)
    assert [(q["destination"], q["rate_per_s"], q["burst"], q["run_id"]) for q in shown["quotas"]] == [
        ("PATCH https://api.example/contacts as client-1", 12.5, 20.0, "an-earlier-run")
    ]
    assert "  12.50/s, burst 20, measured " in etl(tmp_path, "state", "show", str(config)).stdout

    cleared = etl(tmp_path, "state", "clear", str(config), "--quota")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.splitlines() == [
        "forgot the quota remembered for 1 destination(s): the next run measures it again",
        "  12.50/s, burst 20: PATCH https://api.example/contacts as client-1",
    ]
    after = json.loads(etl(tmp_path, "state", "show", str(config), "--json").stdout)
    assert after["quotas"] == [] and after["records"]["delivered"] == len(JSONL_ROWS)  # the checkpoints stay

    cleared = etl(tmp_path, "state", "clear", str(config), "--all")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith(f"forgot all {len(JSONL_ROWS)} checkpoints of pipeline 'state-jsonl' ")
    run_job(tmp_path, config)
    assert sent_keys(tmp_path) == [row["contact_id"] for row in JSONL_ROWS] * 2


def test_clear_is_refused_while_a_run_holds_the_output_directory(tmp_path):
    config, out = jsonl_job(tmp_path)
    run_job(tmp_path, config)
    before = digest(out / "state.db")
    lease = take_lease(str(out), pipeline="state-jsonl", run_id="a-run-in-progress")
    try:
        refused = etl(tmp_path, "state", "clear", str(config), "--all")
        assert refused.returncode == 73, refused.stderr
        assert refused.stderr.startswith("etl: error: nothing was forgotten: another run is using the output directory ")
        assert "run a-run-in-progress" in refused.stderr and refused.stdout == ""
        # Looking is fine during a run.
        shown = etl(tmp_path, "state", "show", str(config), "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["records"]["delivered"] == len(JSONL_ROWS)
    finally:
        lease.release()
    assert digest(out / "state.db") == before
    assert etl(tmp_path, "state", "clear", str(config), "--all").returncode == 0
