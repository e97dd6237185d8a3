"""Shards end to end: `etl run --shard K/N`, and `run.processes` under one parent, against the sandbox."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from etl_core._shard import shard_of
from tests.e2e.conftest import (
    EtlProcess,
    contact_row,
    read_csv,
    sandbox_env,
    wait_until,
    write_rows,
)


def _rows(count: int) -> list[dict[str, str]]:
    """``count`` rows updating seeded contacts, one without a key and one with a bad email."""
    rows = [contact_row(i) for i in range(count)]
    rows.append(contact_row(count, contact_id=""))  # no key: rejected by shard 0 only
    rows.append(contact_row(count + 1, email="not-an-email"))  # a key: rejected by its own shard
    return rows


def _config(tmp_path: Path, custom_config, rows: list[dict[str, str]], *, run_extra: str = "", workers: int = 4) -> Path:
    return custom_config(write_rows(tmp_path / "contacts.csv", rows), workers=workers, run_extra=run_extra)


def _report(out: Path, name: str = "report.json") -> dict:
    return json.loads((out / name).read_text(encoding="utf-8"))


def test_four_shards_send_every_row_exactly_once(tmp_path, start_sandbox, custom_config):
    sandbox = start_sandbox()
    count = 400
    config = _config(tmp_path, custom_config, _rows(count))
    env = sandbox_env(sandbox)
    # Side by side, as four machines or pods would run them: one state file, four leases.
    shards = [
        EtlProcess("run", str(config), "--shard", f"{k}/4", "--log-format", "json", cwd=tmp_path, env=env) for k in range(3)
    ]
    shards.append(EtlProcess("run", str(config), "--log-format", "json", cwd=tmp_path, env={**env, "ETL_SHARD": "3/4"}))
    for shard in shards:
        shard.wait()
        # The bad email's shard and shard 0 (the row without a key) exit 1, the others 0.
        assert shard.returncode in (0, 1), shard.stderr
        assert "Traceback" not in shard.stderr
    stats = sandbox.stats()
    assert stats["applied"] == count and all(n == 1 for n in stats["updates"].values())
    out = tmp_path / "out"
    reports = [_report(out, f"report-shard-{k}-of-4.json") for k in range(4)]
    assert [r["shard"]["index"] for r in reports] == [0, 1, 2, 3]
    # Every row read belongs to one shard: its own count plus the others' is the whole input.
    for report in reports:
        assert report["records"]["read"] + report["shard"]["other_shards"] == count + 2
    assert sum(r["records"]["read"] for r in reports) == count + 2
    assert sum(r["records"]["ok"] for r in reports) == count
    assert sum(r["records"]["rejected"] for r in reports) == 2
    # The row without a key is rejected once, by shard 0, in shard 0's own rejects file.
    keyless = [row for row in read_csv(out / "rejects-shard-0-of-4.csv") if not row["contact_id"]]
    assert len(keyless) == 1
    for k in range(1, 4):
        rejects = out / f"rejects-shard-{k}-of-4.csv"
        assert not rejects.exists() or all(row["contact_id"] for row in read_csv(rejects))
    # Every shard logged with its shard.
    for k, shard in enumerate(shards):
        finished = [json.loads(line) for line in shard.stdout.splitlines() if '"run_finished"' in line]
        assert finished and finished[0]["shard"] == f"{k}/4"
    # etl state show merges the shards' reports.
    show = EtlProcess("state", "show", str(config), "--json", cwd=tmp_path, env={}).wait()
    assert show.returncode == 0, show.stderr
    shown = json.loads(show.stdout)
    assert shown["records"]["delivered"] == count
    assert shown["shards"]["count"] == 4 and shown["shards"]["records"]["ok"] == count
    assert "shards: 4" in _show_text(config, tmp_path) and "3/4: run " in _show_text(config, tmp_path)
    # --fresh forgets the checkpoints of its own shard only: shard 2 sends its rows again, no other.
    again = EtlProcess("run", str(config), "--shard", "2/4", "--fresh", cwd=tmp_path, env=env).wait()
    assert again.returncode in (0, 1), again.stderr
    resent = _report(out, "report-shard-2-of-4.json")["records"]["ok"]
    assert resent == reports[2]["records"]["ok"] > 0
    assert sandbox.stats()["applied"] == count + resent


def _show_text(config: Path, cwd: Path) -> str:
    return EtlProcess("state", "show", str(config), cwd=cwd, env={}).wait().stdout


def test_a_second_process_of_a_shard_and_a_run_of_every_record_are_refused(tmp_path, start_sandbox, custom_config):
    sandbox = start_sandbox(latency=0.2)  # 1 worker, 100 rows per shard: the first shard runs for 20 s
    config = _config(tmp_path, custom_config, _rows(200), workers=1)
    env = sandbox_env(sandbox)
    with EtlProcess("run", str(config), "--shard", "1/2", "--log-format", "json", cwd=tmp_path, env=env) as first:
        wait_until(lambda: sandbox.stats()["requests"] > 0)
        same = EtlProcess("run", str(config), "--shard", "1/2", cwd=tmp_path, env=env).wait()
        whole = EtlProcess("run", str(config), cwd=tmp_path, env=env).wait()
        assert first.running()
        first.process.send_signal(signal.SIGTERM)
        first.wait()
    assert same.returncode == 73 and "another run" in same.stderr
    assert whole.returncode == 73 and "run-shard-1-of-2.lock" in whole.stderr  # names the shard that runs
    assert first.returncode == 143


def test_processes_two_end_to_end_one_report_worst_exit_code(tmp_path, start_sandbox, custom_config):
    sandbox = start_sandbox()
    count = 300
    config = _config(tmp_path, custom_config, _rows(count), run_extra="processes: 2")
    result = EtlProcess("run", str(config), "--log-format", "json", cwd=tmp_path, env=sandbox_env(sandbox)).wait()
    # Two rows are rejected: the worst shard's code is 1.
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    stats = sandbox.stats()
    assert stats["applied"] == count and all(n == 1 for n in stats["updates"].values())
    report = _report(tmp_path / "out")
    assert report["records"]["ok"] == count and report["records"]["rejected"] == 2
    assert report["records"]["read"] == count + 2 and report["exit_code"] == 1
    assert [s["shard"] for s in report["shards"]] == ["0/2", "1/2"]
    assert sorted(s["exit_code"] for s in report["shards"]) in ([0, 1], [1, 1])
    logs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert {line["shard"] for line in logs if line["event"] == "run_finished"} == {"0/2", "1/2"}


def test_processes_a_child_killed_is_named_and_a_rerun_resumes(tmp_path, start_sandbox, custom_config):
    sandbox = start_sandbox(latency=0.02)
    count, workers = 600, 4
    rows = [contact_row(i) for i in range(count)]
    config = _config(tmp_path, custom_config, rows, run_extra="processes: 2", workers=workers)
    env = sandbox_env(sandbox)
    lease = tmp_path / "out" / "run-shard-1-of-2.lock"

    with EtlProcess("run", str(config), "--log-format", "json", cwd=tmp_path, env=env) as parent:
        wait_until(lambda: _lease_holder(lease) is not None and sandbox.stats()["applied"] >= 100)
        os.kill(_lease_holder(lease), signal.SIGKILL)
        parent.wait()
    assert parent.returncode == 1
    assert "shard 1/2" in parent.stderr and "SIGKILL" in parent.stderr and "Traceback" not in parent.stderr
    report = _report(tmp_path / "out")
    assert [s["records"] is None for s in report["shards"]] == [False, True]
    before = dict(sandbox.stats()["updates"])
    assert len(before) < count  # shard 1 stopped early

    rerun = EtlProcess("run", str(config), "--log-format", "json", cwd=tmp_path, env=env).wait()
    assert rerun.returncode == 0, rerun.stderr
    updates = sandbox.stats()["updates"]
    assert len(updates) == count  # nothing lost
    # Only the records in flight in the killed shard are sent twice.
    resent = [key for key, n in updates.items() if n > 1]
    assert len(resent) <= workers, resent
    records = _report(tmp_path / "out")["records"]
    assert records["ok"] + records["skipped"] == count and records["ok"] <= count - len(before) + workers


def _lease_holder(lease: Path) -> int | None:
    try:
        return json.loads(lease.read_text() or "null")["pid"]
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: it only waits for its exit status to be read.
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rpartition(")")[2].split()[0] != "Z"


def test_processes_a_parent_killed_stops_its_shards_and_a_rerun_resumes(tmp_path, start_sandbox, custom_config):
    sandbox = start_sandbox(latency=0.05)  # 2 workers a shard: 40 updates/s, 15 s of sending
    count, workers = 600, 2
    config = _config(tmp_path, custom_config, [contact_row(i) for i in range(count)], run_extra="processes: 2", workers=workers)
    env = sandbox_env(sandbox)
    leases = [tmp_path / "out" / f"run-shard-{k}-of-2.lock" for k in range(2)]
    with EtlProcess("run", str(config), "--log-format", "json", cwd=tmp_path, env=env) as parent:
        wait_until(lambda: all(_lease_holder(lease) for lease in leases) and sandbox.stats()["applied"] >= 50)
        shards = [_lease_holder(lease) for lease in leases]
        parent.process.kill()  # SIGKILL: it forwards nothing
        parent.wait()
    # The shards stop as on SIGTERM, long before their records are all sent.
    wait_until(lambda: not any(_alive(pid) for pid in shards if pid is not None), timeout=20)
    stopped_at = sandbox.stats()["applied"]
    assert stopped_at < count
    rerun = EtlProcess("run", str(config), "--log-format", "json", "--workers", "16", cwd=tmp_path, env=env).wait()
    assert rerun.returncode == 0, rerun.stderr  # no lease is left held
    updates = sandbox.stats()["updates"]
    assert len(updates) == count
    assert len([key for key, n in updates.items() if n > 1]) <= 2 * workers  # at most what was in flight


def test_processes_pass_a_signal_on_to_every_shard(tmp_path, start_sandbox, custom_config):
    sandbox = start_sandbox(latency=0.2)  # 1 worker, 100 rows per shard: 20 s each, stopped long before
    config = _config(tmp_path, custom_config, [contact_row(i) for i in range(200)], run_extra="processes: 2", workers=1)
    out = tmp_path / "out"
    with EtlProcess("run", str(config), "--log-format", "json", cwd=tmp_path, env=sandbox_env(sandbox)) as parent:
        # Both shards are sending: each has had a record of its own delivered.
        wait_until(lambda: {shard_of(key, 2) for key in sandbox.stats()["updates"]} == {0, 1})
        parent.process.send_signal(signal.SIGINT)
        parent.wait()
    assert parent.returncode == 130, parent.stderr
    report = _report(out)
    assert report["interrupted_by"] == "SIGINT" and report["exit_code"] == 130
    assert [s["exit_code"] for s in report["shards"]] == [130, 130], (report, parent.stderr)
    assert report["records"]["ok"] == sandbox.stats()["applied"] < 200, (report, parent.stderr)
    # Each shard stopped once, gracefully (a second signal would have cancelled its sends).
    logs = [json.loads(line) for line in parent.stdout.splitlines() if line.strip()]
    assert sorted(line["shard"] for line in logs if line["event"] == "stopping") == ["0/2", "1/2"]
    assert not [line for line in logs if line["event"] == "stopping_now"]


def test_processes_draw_one_progress_bar_and_one_summary(tmp_path):
    from tests.e2e.test_progress import ESCAPE, run_on_a_terminal, write_inputs

    config = write_inputs(tmp_path, extra="key: id\nrun: {processes: 2}\n")
    code, screen, stdout = run_on_a_terminal("run", str(config), "--log-format", "json", cwd=tmp_path)
    assert code == 0, screen
    assert "Traceback" not in screen
    # One bar for both shards: the whole input's rows, not one shard's.
    assert "2,000/2,000 rows" in screen and "ok 2,000" in screen
    summary = ESCAPE.sub("", screen[screen.rindex("Finished in") :])
    assert screen.count("Finished in") == 1
    assert re.search(r"^ok +2,000 +delivered", summary, re.MULTILINE)
    assert re.search(r"^shard 0/2 +exit code 0 +ok [\d,]+", summary, re.MULTILINE)
    assert re.search(r"^shard 1/2 +exit code 0 +ok [\d,]+", summary, re.MULTILINE)
    assert {json.loads(line).get("shard") for line in stdout.splitlines()} == {"0/2", "1/2"}


def test_shard_usage_errors(tmp_path, custom_config):
    config = _config(tmp_path, custom_config, _rows(3))
    result = EtlProcess("run", str(config), "--shard", "3/2", cwd=tmp_path, env={}).wait()
    assert result.returncode == 2 and "--shard" in result.stderr and "from 0 to 1" in result.stderr, result.stderr
    result = EtlProcess("run", str(config), cwd=tmp_path, env={"ETL_SHARD": "0/0"}).wait()
    assert result.returncode == 2 and result.stderr.startswith("etl: error: ETL_SHARD:"), result.stderr
    assert "Traceback" not in result.stderr


def test_shards_need_a_key(tmp_path, custom_config):
    config = _config(tmp_path, custom_config, _rows(3), run_extra="processes: 2")
    config.write_text(config.read_text(encoding="utf-8").replace("key: contactId\n", ""), encoding="utf-8")
    env = {"CXONE_BASE_URL": "http://127.0.0.1:9", "CXONE_TOKEN_URL": "http://127.0.0.1:9/t", "CXONE_CLIENT_ID": "a", "CXONE_CLIENT_SECRET": "b"}
    result = EtlProcess("run", str(config), cwd=tmp_path, env=env).wait()
    assert result.returncode == 2 and "key: is not set" in result.stderr, result.stderr
    result = EtlProcess("run", str(config), "--shard", "0/2", cwd=tmp_path, env=env).wait()
    assert result.returncode == 2 and "key: is not set" in result.stderr, result.stderr

