"""`etl run` and `etl state` with ``state.url``: the checkpoints in a real PostgreSQL database.

The database is shared by every machine that runs the pipeline: here, two output
directories stand for two machines. The sandbox and the server run on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

from etl_core._state_store import open_state
from etl_cxone.sandbox import contact_id
from tests.conftest import pipeline_config, run_etl
from tests.e2e.conftest import CONTACT_FIELDS, contact_row, sandbox_env, write_rows

ROWS = 120


def write_pipeline(tmp_path: Path, url: str, out: str) -> Path:
    """A pipeline of ROWS contacts whose state is in the database at ``url`` (password from ${PGPASSWORD})."""
    password = url.split("@")[0].rsplit(":", 1)[1]
    templated = url.replace(f":{password}@", ":${PGPASSWORD}@")
    config = tmp_path / f"{out}.yaml"
    config.write_text(
        pipeline_config(
            name="pg-contacts", csv=tmp_path / "contacts.csv", out=tmp_path / out, fields=CONTACT_FIELDS,
            extra=f"state:\n  url: {json.dumps(templated)}\n",
        ),
        encoding="utf-8",
    )
    return config


def environment(sandbox, url: str) -> dict[str, str]:
    return {**sandbox_env(sandbox), "PGPASSWORD": url.split("@")[0].rsplit(":", 1)[1]}


def report(tmp_path: Path, out: str) -> dict:
    return json.loads((tmp_path / out / "report.json").read_text(encoding="utf-8"))


def test_a_rerun_on_another_machine_skips_what_the_first_delivered(tmp_path, start_sandbox, postgres_url):
    sandbox = start_sandbox()
    write_rows(tmp_path / "contacts.csv", [contact_row(i) for i in range(ROWS)])
    env = environment(sandbox, postgres_url)
    first = write_pipeline(tmp_path, postgres_url, "machine-a")
    done = run_etl("run", str(first), "--log-format", "json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert report(tmp_path, "machine-a")["records"]["ok"] == ROWS
    assert not list((tmp_path / "machine-a").glob("*.db"))  # no SQLite file: the state is in the database
    password = env["PGPASSWORD"]
    assert password not in done.stdout + done.stderr + (tmp_path / "machine-a" / "report.json").read_text(encoding="utf-8")

    # Another output directory (another machine), the same database: nothing is sent again...
    second = write_pipeline(tmp_path, postgres_url, "machine-b")
    requests = sandbox.stats()["requests"]
    done = run_etl("run", str(second), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert report(tmp_path, "machine-b")["records"]["skipped"] == ROWS
    assert sandbox.stats()["requests"] == requests
    # ...but a changed row.
    write_rows(tmp_path / "contacts.csv", [contact_row(i, city="Moved") if i == 7 else contact_row(i) for i in range(ROWS)])
    done = run_etl("run", str(second), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (report(tmp_path, "machine-b")["records"]["ok"], report(tmp_path, "machine-b")["records"]["skipped"]) == (1, ROWS - 1)
    assert sandbox.contact(contact_id(7))["city"] == "Moved"
    # A dry run reads the database too: it would skip every record.
    done = run_etl("run", str(second), "--dry-run", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert report(tmp_path, "machine-b/dry-run")["records"]["skipped"] == ROWS

    shown = run_etl("state", "show", str(second), "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["records"]["delivered"] == ROWS and password not in shown.stdout
    assert document["state_file"] == postgres_url.replace(f":{password}@", "@")
    cleared = run_etl("state", "clear", str(first), "--all", cwd=tmp_path, env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith(f"forgot all {ROWS} checkpoints of pipeline 'pg-contacts'")


def test_a_run_holding_the_database_s_lease_keeps_a_run_on_another_machine_out(tmp_path, start_sandbox, postgres_url):
    sandbox = start_sandbox()
    write_rows(tmp_path / "contacts.csv", [contact_row(i) for i in range(10)])
    store = open_state(postgres_url, "", "pg-contacts", "run-elsewhere")
    lease = store.take_lease()
    try:
        done = run_etl("run", str(write_pipeline(tmp_path, postgres_url, "out")), cwd=tmp_path, env=environment(sandbox, postgres_url))
    finally:
        lease.release()
        store.close()
    assert done.returncode == 73, done.stderr
    assert "etl: error: another run is using the state of pg-contacts in postgresql://etl@" in done.stderr
    assert "run run-elsewhere" in done.stderr
    assert sandbox.stats()["requests"] == 0


def test_wrong_credentials_are_a_config_error_before_anything_is_read_or_sent(tmp_path, start_sandbox, postgres_url):
    sandbox = start_sandbox()
    write_rows(tmp_path / "contacts.csv", [contact_row(i) for i in range(10)])
    env = {**environment(sandbox, postgres_url), "PGPASSWORD": "not-the-password-42"}
    done = run_etl("run", str(write_pipeline(tmp_path, postgres_url, "out")), "--log-format", "json", cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("etl: error: ")]
    assert len(errors) == 1, done.stderr
    assert "the state database postgresql://etl@127.0.0.1:" in errors[0]
    assert "password authentication failed" in errors[0]
    assert "not-the-password-42" not in done.stdout + done.stderr
    assert sandbox.stats()["requests"] == 0
