"""Crashes, signals and reruns: the real `etl` command against the CXone sandbox.

Each test starts the sandbox in this process (a background thread on 127.0.0.1), runs
`etl run` in a subprocess pointed at it, and checks what the server saw: how many times
each contact was updated and with which values.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from etl_cxone.sandbox import Sandbox, SandboxSettings, contact_id, run_sandbox_in_thread
from tests.conftest import ETL, pipeline_config

HEADER = ("contact_id", "first_name", "last_name", "email")

#: Contacts the sandbox knows: contact_id(0) .. contact_id(SEEDED - 1).
SEEDED = 25_000


# -- helpers -------------------------------------------------------------------------


def row(i: int, version: int = 0, *, email: str | None = None) -> dict[str, str]:
    """A CSV row updating seeded contact ``i`` (``version`` changes every value)."""
    return {
        "contact_id": contact_id(i),
        "first_name": f" First{i}v{version} ",
        "last_name": f"Last{i}  v{version}",
        "email": email if email is not None else f" User{i}.V{version}@Example.com",
    }


def missing_row(k: int) -> dict[str, str]:
    """A valid row for a contact the sandbox does not have (404)."""
    return {**row(0), "contact_id": contact_id(900_000 + k)}


def expected(r: dict[str, str]) -> dict[str, str]:
    """What the sandbox holds for a contact after ``r`` was applied."""
    return {
        "contactId": r["contact_id"],
        "firstName": " ".join(r["first_name"].split()),
        "lastName": " ".join(r["last_name"].split()),
        "email": r["email"].strip().lower(),
    }


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class Job:
    """A config in tmp_path pointing at one sandbox, and ways to run it."""

    def __init__(self, tmp_path: Path, sandbox: Sandbox, csv_path: Path, **options: Any) -> None:
        self.tmp_path = tmp_path
        self.sandbox = sandbox
        self.out = tmp_path / "out"
        self.csv = csv_path
        self.config = tmp_path / "pipeline.yaml"
        self.runs = 0
        email_from = options.get("email_from", "email")
        text = pipeline_config(
            name="resume-e2e",
            csv=csv_path,
            out=self.out,
            fields={
                "contactId": "{from: contact_id, normalize: [strip]}",
                "firstName": "{from: first_name, normalize: [strip, collapse_whitespace]}",
                "lastName": "{from: last_name, normalize: [strip, collapse_whitespace]}",
                "email": f"{{from: {email_from}, normalize: [strip, lower]}}",
            },
            workers=options.get("workers", 8),
            run_extra=options.get("run_extra", ""),
            output_extra=options.get("output_extra", ""),
        )
        self.config.write_text(text, encoding="utf-8")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CXONE_")}
        self.env.update(
            CXONE_BASE_URL=sandbox.url,
            CXONE_TOKEN_URL=sandbox.url + "/oauth/token",
            CXONE_CLIENT_ID="sandbox-client",
            CXONE_CLIENT_SECRET="sandbox-secret",
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start `etl run` (JSON logs to a file in tmp_path, so no pipe can fill up)."""
        self.runs += 1
        self._log = open(self.tmp_path / f"run-{self.runs}.log", "wb")
        return subprocess.Popen(
            [*ETL, "run", str(self.config), "--log-format", "json", *args],
            cwd=self.tmp_path, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def finish(self, proc: subprocess.Popen[bytes], timeout: float = 120) -> int:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"etl run did not finish within {timeout} s:\n{self.log_text()[-3000:]}")
        self._log.close()
        return code

    def run(self, *args: str, timeout: float = 120) -> int:
        """Run `etl run` to the end; return its exit code."""
        return self.finish(self.start(*args), timeout)

    def log_text(self) -> str:
        return (self.tmp_path / f"run-{self.runs}.log").read_text(encoding="utf-8", errors="replace")

    def report(self) -> dict[str, Any]:
        return json.loads((self.out / "report.json").read_text(encoding="utf-8"))

    def rejects(self) -> list[dict[str, str]]:
        path = self.out / "rejects.csv"
        return read_csv(path) if path.exists() else []


def wait_until(condition: Callable[[], bool], *, timeout: float = 60, interval: float = 0.02, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout} s")
        time.sleep(interval)


def applied(sandbox: Sandbox) -> int:
    return sandbox.stats()["applied"]


def wait_for_applied(sandbox: Sandbox, count: int, proc: subprocess.Popen[bytes]) -> None:
    """Poll the sandbox until ``count`` updates were applied (the run must still be going)."""

    def reached() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"etl run ended (exit {proc.returncode}) before {count} updates were applied")
        return applied(sandbox) >= count

    try:
        wait_until(reached, what=f"{count} applied updates")
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def settle(sandbox: Sandbox) -> dict[str, int]:
    """After the client died: wait until the sandbox applied what reached it; return the updates."""
    last = [-1]

    def still() -> bool:
        now = applied(sandbox)
        done = now == last[0]
        last[0] = now
        return done

    wait_until(still, interval=0.3, what="a quiet sandbox")
    return sandbox.stats()["updates"]


def check_final_values(sandbox: Sandbox, rows: list[dict[str, str]]) -> None:
    """Every row (the last one of each id wins) is what the sandbox holds now."""
    final = {r["contact_id"]: r for r in rows}
    wrong = [cid for cid, r in final.items() if sandbox.contact(cid) != expected(r)]
    assert not wrong, f"{len(wrong)} contacts do not hold their final values, e.g. {wrong[:3]}"


@pytest.fixture
def sandbox() -> Iterator[Callable[..., Sandbox]]:
    with ExitStack() as stack:

        def start(**settings: Any) -> Sandbox:
            settings.setdefault("seed_count", SEEDED)
            return stack.enter_context(run_sandbox_in_thread(SandboxSettings(host="127.0.0.1", port=0, **settings)))

        yield start


# -- crashes and signals -------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_three_times_then_finish(tmp_path, sandbox):
    """kill -9 at ~20%, ~50% and ~80%: nothing is lost, each crash re-sends at most the in-flight rows."""
    n, workers = 4_000, 16
    server = sandbox(latency=0.005)
    rows = [row(i, email="not-an-email" if i % 1000 == 999 else None) for i in range(n)]
    valid = [r for r in rows if "@" in r["email"]]
    job = Job(tmp_path, server, write_csv(tmp_path / "contacts.csv", rows), workers=workers)

    snapshots: list[dict[str, int]] = [{}]
    for share in (0.2, 0.5, 0.8):
        proc = job.start()
        wait_for_applied(server, int(n * share), proc)
        proc.kill()
        assert job.finish(proc) == -signal.SIGKILL  # killed mid-run, not finished
        snapshots.append(settle(server))
    code = job.run()
    assert code == 1, job.log_text()[-3000:]  # the invalid emails
    snapshots.append(server.stats()["updates"])

    # Nothing lost: every valid row applied, with its values; the invalid ones never sent.
    final = snapshots[-1]
    assert {r["contact_id"] for r in valid} == set(final)
    check_final_values(server, valid)
    report = job.report()
    assert report["records"]["failed"] == 0 and report["records"]["not_processed"] == 0
    assert report["records"]["rejected"] == n - len(valid) == n // 1000
    assert report["records"]["ok"] + report["records"]["skipped"] == len(valid)

    # The kills happened at three different points, none after the end.
    at_kill = [sum(s.values()) for s in snapshots[1:4]]
    assert at_kill[0] < at_kill[1] < at_kill[2] < n + 3 * (workers + 10), at_kill
    assert len(snapshots[3]) < len(valid)

    # Rows re-sent because of each kill: updates beyond a contact's first one, made between
    # that kill and the next (a run re-sends nothing of its own: no errors here).
    resent = []
    for before, after in zip(snapshots[1:4], snapshots[2:5], strict=False):
        resent.append(sum(max(0, count - max(before.get(cid, 0), 1)) for cid, count in after.items()))
    total = sum(count - 1 for count in final.values())
    print(f"\nkill -9 at {at_kill} applied updates: re-sent rows per kill {resent} (total {total}, {workers} workers)")
    assert sum(resent) == total
    for count in resent:
        assert count <= workers + 10, resent


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_gracefully_and_the_rerun_finishes(tmp_path, sandbox, signum, code):
    n = 3_000
    server = sandbox(latency=0.005)
    rows = [row(i) for i in range(n)]
    job = Job(tmp_path, server, write_csv(tmp_path / "contacts.csv", rows), workers=16)

    proc = job.start()
    wait_for_applied(server, 500, proc)
    proc.send_signal(signum)
    assert job.finish(proc, timeout=60) == code, job.log_text()[-3000:]
    report = job.report()
    assert report["interrupted_by"] == signum.name and report["exit_code"] == code
    assert (job.out / "state.db").exists()
    first = report["records"]
    sent_first = len(server.stats()["updates"])
    assert 500 <= first["ok"] == sent_first < n, first
    events = [json.loads(line) for line in job.log_text().splitlines() if line.startswith("{")]
    assert any(e["event"] == "stopping" and e.get("signal") == signum.name for e in events)

    assert job.run() == 0, job.log_text()[-3000:]
    again = job.report()
    assert again["interrupted_by"] is None
    assert again["records"]["skipped"] == sent_first
    assert again["records"]["ok"] == n - sent_first
    updates = server.stats()["updates"]
    assert len(updates) == n
    twice = {cid: count for cid, count in updates.items() if count != 1}
    assert not twice, f"{len(twice)} contacts updated more than once"
    check_final_values(server, rows)


# -- reruns --------------------------------------------------------------------------


def test_rerun_of_a_completed_job_sends_nothing_then_only_the_changed_row(tmp_path, sandbox):
    n = 300
    server = sandbox()
    rows = [row(i) for i in range(n)]
    job = Job(tmp_path, server, write_csv(tmp_path / "contacts.csv", rows))
    assert job.run() == 0, job.log_text()[-3000:]
    assert job.report()["records"]["ok"] == n

    before = server.stats()["requests"]
    assert job.run() == 0, job.log_text()[-3000:]
    assert server.stats()["requests"] - before == 0
    report = job.report()
    assert report["records"]["skipped"] == n and report["records"]["ok"] == 0
    assert report["requests"]["attempts"] == 0

    rows[123] = row(123, email="changed.123@example.com")
    write_csv(job.csv, rows)
    before = server.stats()["requests"]
    assert job.run() == 0, job.log_text()[-3000:]
    assert server.stats()["requests"] - before == 1
    report = job.report()
    assert report["records"]["ok"] == 1 and report["records"]["skipped"] == n - 1
    assert server.contact(contact_id(123))["email"] == "changed.123@example.com"
    assert server.stats()["updates"][contact_id(123)] == 2


def _goes_down_mid_run(tmp_path, sandbox, n, *, run_extra):
    """Start a run of ``n`` rows (16 workers) and take the destination down once 200 are applied.

    Returns:
        The sandbox, the rows, the job and its process.
    """
    server = sandbox(latency=0.02)
    rows = [row(i) for i in range(n)]
    job = Job(tmp_path, server, write_csv(tmp_path / "contacts.csv", rows), workers=16, run_extra=run_extra)
    process = job.start()
    wait_for_applied(server, 200, process)
    server.settings.outage = True
    return server, rows, job, process


def _rerun_after_the_outage(server, job, records, n):
    """Bring the destination back and rerun: it sends the rows left, and every row was applied once."""
    server.settings.outage = False
    assert job.run() == 0, job.log_text()[-3000:]
    report = job.report()
    assert report["records"]["ok"] == records["not_processed"]
    updates = server.stats()["updates"]
    assert len(updates) == n and set(updates.values()) == {1}
    return report


def test_an_outage_longer_than_max_outage_leaves_the_rest_for_the_rerun(tmp_path, sandbox):
    """The destination goes down mid-run for longer than run.max_outage (5 s here): the run
    stops with exit 75 and the rows not sent stay not_processed; the rerun after the outage
    sends them, and none twice."""
    n = 1_000
    server, rows, job, process = _goes_down_mid_run(tmp_path, sandbox, n, run_extra="max_outage: 5")
    down_at = time.monotonic()
    assert job.finish(process, timeout=60) == 75, job.log_text()[-3000:]
    took = time.monotonic() - down_at
    report = job.report()
    records = report["records"]
    print(f"\noutage: exit 75 {took:.1f} s after it began; {records}; {report['requests']['probes']} probes")
    assert took < 5 + 10, took  # the breaker opens within seconds; max_outage; the drain
    assert records["failed"] == 0 and records["ok"] >= 200
    assert records["ok"] + records["not_processed"] == n
    assert report["requests"]["outages"] == 1
    assert "run.max_outage" in report["aborted"]
    # The rows in flight when it began got a few charged attempts; none was given up.
    assert report["requests"]["attempts"] <= records["ok"] + report["requests"]["probes"] + 5 + 16
    assert job.rejects() == []
    events = [json.loads(line)["event"] for line in job.log_text().splitlines() if line.startswith("{")]
    assert events.count("outage_started") == 1 and "outage_probe" in events and "outage_ended" not in events

    report = _rerun_after_the_outage(server, job, records, n)
    assert report["records"]["skipped"] == records["ok"]
    check_final_values(server, rows)


def test_ctrl_c_during_an_outage_stops_at_once_and_the_rerun_sends_the_rest(tmp_path, sandbox):
    """Records waiting out an outage are not in flight: Ctrl-C stops them at once, however
    long the drain deadline, and they stay not_processed for the rerun."""
    n = 1_000
    server, _, job, proc = _goes_down_mid_run(tmp_path, sandbox, n, run_extra="drain_timeout: 300")
    wait_until(lambda: '"outage_started"' in job.log_text(), what="the outage breaker opening")
    proc.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    assert job.finish(proc, timeout=120) == 130, job.log_text()[-3000:]
    assert time.monotonic() - signalled < 60  # not the 300 s drain deadline
    records = job.report()["records"]
    assert records["failed"] == 0 and records["ok"] >= 200 and records["ok"] + records["not_processed"] == n

    _rerun_after_the_outage(server, job, records, n)


def test_random_errors_and_dropped_connections_lose_nothing(tmp_path, sandbox):
    n = 2_000
    server = sandbox(error_rate=0.05, drop_rate=0.02, random_seed=7)
    rows = [row(i) for i in range(n)]
    job = Job(tmp_path, server, write_csv(tmp_path / "contacts.csv", rows), workers=16)

    assert job.run() == 0, job.log_text()[-3000:]
    report = job.report()
    stats = server.stats()
    print(f"\nerrors: retries {report['requests']['retries']}, by status {report['requests']['by_status']}, "
          f"dropped {stats['dropped']}")
    assert report["records"]["ok"] == n
    assert report["requests"]["retries"] > 0
    assert stats["dropped"] > 0 and any(status.startswith("5") for status in stats["by_status"])
    assert report["requests"]["retries"] == report["requests"]["attempts"] - n
    updates = stats["updates"]
    assert len(updates) == n
    # Only a dropped answer (the update was applied) makes a contact updated twice.
    assert sum(count - 1 for count in updates.values()) <= stats["dropped"]
    check_final_values(server, rows)


@pytest.mark.parametrize("mode", ["last", "reject"])
def test_duplicate_keys(tmp_path, sandbox, mode):
    server = sandbox()
    rows = [row(i) for i in range(10)]  # lines 2..11
    rows.append(row(9, version=1))  # line 12: same batch as line 11 (batch_size 4)
    rows.append(row(3, version=1))  # line 13: a later batch than line 5
    job = Job(
        tmp_path, server, write_csv(tmp_path / "contacts.csv", rows),
        run_extra=f"batch_size: 4\nduplicate_keys: {mode}",
    )
    code = job.run()
    updates = server.stats()["updates"]
    if mode == "last":
        assert code == 0, job.log_text()[-3000:]
        assert server.contact(contact_id(9)) == expected(rows[10])
        assert server.contact(contact_id(3)) == expected(rows[11])
        assert updates[contact_id(9)] == updates[contact_id(3)] == 2
        assert job.rejects() == []
    else:
        assert code == 1, job.log_text()[-3000:]
        assert server.contact(contact_id(9)) == expected(rows[9])
        assert server.contact(contact_id(3)) == expected(rows[3])
        assert updates[contact_id(9)] == updates[contact_id(3)] == 1
        rejects = sorted(job.rejects(), key=lambda r: int(r["_line"]))
        assert [(r["_line"], r["_key"]) for r in rejects] == [("12", contact_id(9)), ("13", contact_id(3))]
        assert "line 11" in rejects[0]["_reason"] and "line 5" in rejects[1]["_reason"]
        assert "duplicate" in rejects[0]["_reason"]
        assert job.report()["records"]["rejected"] == 2
    assert len(updates) == 10


def test_max_failure_rate_stops_the_run_early(tmp_path, sandbox):
    n = 20_000
    server = sandbox()
    # The email is (wrongly) mapped from first_name: only every 10th row has an address there.
    rows = [{**row(i), "first_name": f"first{i}@example.com" if i % 10 == 0 else f"First{i}"} for i in range(n)]
    job = Job(
        tmp_path, server, write_csv(tmp_path / "contacts.csv", rows),
        email_from="first_name", run_extra="max_failure_rate: 0.2\nmin_records_for_failure_rate: 100",
    )
    assert job.run() == 1, job.log_text()[-3000:]
    report = job.report()
    print(f"\nmax_failure_rate: read {report['records']['read']} of {n}, aborted: {report['aborted']}")
    assert report["records"]["read"] <= n // 4
    assert report["records"]["rejected"] >= 90
    assert "max_failure_rate" in (report["aborted"] or "")
    assert server.stats()["applied"] <= report["records"]["read"] // 5


def test_success_file_lists_every_applied_row(tmp_path, sandbox):
    server = sandbox()
    rows = [row(i, email="broken" if i % 10 == 4 else None) for i in range(30)] + [missing_row(1), missing_row(2)]
    job = Job(tmp_path, server, write_csv(tmp_path / "contacts.csv", rows), output_extra="success: applied.csv")
    assert job.run() == 1, job.log_text()[-3000:]
    success = read_csv(job.out / "applied.csv")
    assert set(success[0]) >= {"key", "line", "status"}
    listed = {(s["key"], int(s["line"]), s["status"]) for s in success}
    wanted = {(r["contact_id"], line, "200") for line, r in enumerate(rows, start=2) if "@" in r["email"] and r["contact_id"] in server.stats()["updates"]}
    assert len(wanted) == 27
    assert listed == wanted
    assert len(success) == 27
    assert job.report()["files"]["success"] == str(job.out / "applied.csv")


def test_retry_rejected_resends_unchanged_404_rows(tmp_path, sandbox):
    server = sandbox()
    rows = [row(i) for i in range(50)] + [missing_row(k) for k in range(5)]
    job = Job(tmp_path, server, write_csv(tmp_path / "contacts.csv", rows))
    missing = [r["contact_id"] for r in rows[50:]]

    assert job.run() == 1, job.log_text()[-3000:]
    rejects = job.rejects()
    assert sorted(r["_key"] for r in rejects) == sorted(missing)
    assert {(r["_status"], r["_retryable"]) for r in rejects} == {("404", "no")}
    requests = server.stats()["requests"]
    assert requests == 55

    # Without --retry-rejected: the unchanged 404 rows are not sent again (but still reported).
    assert job.run() == 1, job.log_text()[-3000:]
    assert server.stats()["requests"] == requests
    report = job.report()
    assert report["records"]["skipped"] == 50 and report["records"]["failed"] == 5 and report["requests"]["attempts"] == 0
    assert sorted(r["_key"] for r in job.rejects()) == sorted(missing)
    assert all("--retry-rejected" in r["_reason"] for r in job.rejects())

    # Two of them now exist; --retry-rejected sends all five again.
    server.settings.extra_ids = tuple(missing[:2])
    assert job.run("--retry-rejected") == 1, job.log_text()[-3000:]
    assert server.stats()["requests"] == requests + 5
    report = job.report()
    assert report["records"]["ok"] == 2 and report["records"]["failed"] == 3 and report["records"]["skipped"] == 50
    assert sorted(r["_key"] for r in job.rejects()) == sorted(missing[2:])
    updates = server.stats()["updates"]
    assert updates[missing[0]] == updates[missing[1]] == 1
    assert server.contact(missing[0]) == {**expected(rows[50]), "contactId": missing[0]}

    # And once more without the flag: the two now applied are skipped, the three still missing are not sent.
    assert job.run() == 1, job.log_text()[-3000:]
    assert server.stats()["requests"] == requests + 5
    report = job.report()
    assert report["records"]["skipped"] == 52 and report["records"]["failed"] == 3


# -- one run at a time ---------------------------------------------------------------


def running_job(tmp_path, sandbox, *, n, latency, workers, applied_first):
    """A job on ``n`` rows, its run started and ``applied_first`` updates applied."""
    server = sandbox(latency=latency)
    rows = [row(i) for i in range(n)]
    job = Job(tmp_path, server, write_csv(tmp_path / "contacts.csv", rows), workers=workers)
    proc = job.start()
    wait_for_applied(server, applied_first, proc)
    return server, rows, job, proc


def run_captured(job: Job, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `etl run` on ``job``'s config beside the job's own run, output captured."""
    return subprocess.run(
        [*ETL, "run", str(job.config), "--log-format", "json", *args],
        cwd=job.tmp_path, env=job.env, capture_output=True, text=True, timeout=60,
    )


def test_a_second_run_at_once_is_refused_and_the_first_sends_every_row_once(tmp_path, sandbox):
    server, rows, job, first = running_job(tmp_path, sandbox, n=1500, latency=0.01, workers=4, applied_first=100)
    files_before = sorted(p.name for p in job.out.iterdir())

    started = time.monotonic()
    second = run_captured(job)
    took = time.monotonic() - started
    assert second.returncode == 73, second.stderr
    assert "another run is using the output directory" in second.stderr
    assert f"process {first.pid} on " in second.stderr and "Traceback" not in second.stderr
    # It started, found the lease taken, and left: the time is a start-up's (the issue's
    # target is 1 s; the bound leaves room for a loaded machine).
    print(f"\nsecond run refused after {took:.2f} s (process start included)")
    assert took < 5, took
    assert first.poll() is None  # the first run was not disturbed...
    assert sorted(p.name for p in job.out.iterdir()) == files_before  # ...nor its files

    assert job.finish(first) == 0, job.log_text()[-3000:]
    updates = server.stats()["updates"]
    assert len(updates) == len(rows) and set(updates.values()) == {1}
    assert job.report()["records"]["ok"] == len(rows)


@pytest.mark.slow
def test_a_lease_left_by_a_killed_run_is_taken_over(tmp_path, sandbox):
    server, rows, job, proc = running_job(tmp_path, sandbox, n=3000, latency=0.005, workers=8, applied_first=300)
    proc.kill()
    assert job.finish(proc) == -signal.SIGKILL
    assert (job.out / "run.lock").exists()  # the file stays; the kernel dropped the lock

    assert job.run() == 0, job.log_text()[-3000:]
    report = job.report()
    assert report["records"]["ok"] + report["records"]["skipped"] == len(rows)
    assert set(settle(server)) == {r["contact_id"] for r in rows}


def test_a_dry_run_does_not_wait_for_a_real_run(tmp_path, sandbox):
    _, _, job, real = running_job(tmp_path, sandbox, n=1500, latency=0.01, workers=4, applied_first=50)
    dry = run_captured(job, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert job.finish(real) == 0
