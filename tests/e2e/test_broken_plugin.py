"""A broken third-party plugin (tests/fixtures/etl-broken-plugin), installed for real: etl still works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import install_distribution, run_etl

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "etl-broken-plugin"
MISSING = "ModuleNotFoundError: No module named 'etl_broken_missing_dependency'"
WARNING = (
    f"etl: warning: plugin 'broken' (etl-broken-plugin 0.3.0) failed to load and was skipped: {MISSING} "
    "(ETL_DISABLE_PLUGINS=broken switches it off)\n"
)
NOT_USING_IT = "pipeline: p\nsource:\n  type: csv\n  path: in.csv\nsink:\n  type: jsonl\n  path: out/records.jsonl\n"
USING_IT = "pipeline: p\nsource:\n  type: csv\n  path: in.csv\nsink:\n  type: shaky\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed into its own directory (use it with PYTHONPATH)."""
    return install_distribution(FIXTURE, tmp_path_factory.mktemp("broken-plugin"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with an input file and two configs: one using the broken plugin's sink, one not."""
    (tmp_path / "in.csv").write_text("id,email\n1,ada@example.com\n", encoding="utf-8")
    (tmp_path / "not-using-it.yaml").write_text(NOT_USING_IT, encoding="utf-8")
    (tmp_path / "using-it.yaml").write_text(USING_IT, encoding="utf-8")
    return tmp_path


def env(site: Path, **variables: str) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "ETL_DISABLE_PLUGINS": "", "ETL_TEST_BROKEN_AT": "import", **variables}


def test_etl_plugins_lists_it_as_broken_and_exits_0(site: Path, project: Path) -> None:
    listed = run_etl("plugins", cwd=project, env=env(site))
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == WARNING  # once, one line, no traceback
    assert "sink       jsonl" in listed.stdout
    assert f"broken  etl-broken-plugin  0.3.0    broken  {MISSING}" in listed.stdout

    as_json = run_etl("plugins", "--json", cwd=project, env=env(site))
    assert as_json.returncode == 0
    rows = json.loads(as_json.stdout)
    assert [row for row in rows if row["plugin"] == "broken"] == [
        {"kind": None, "name": None, "package": "etl-broken-plugin", "version": "0.3.0", "plugin": "broken",
         "description": "", "status": "broken", "reason": MISSING}
    ]
    assert {row["status"] for row in rows if row["plugin"] != "broken"} == {"ok"}


def test_a_config_that_does_not_use_it_validates_and_runs(site: Path, project: Path) -> None:
    validated = run_etl("validate", "not-using-it.yaml", cwd=project, env=env(site))
    assert validated.returncode == 0, validated.stderr
    assert validated.stderr == WARNING
    assert "not-using-it.yaml: valid." in validated.stdout

    ran = run_etl("run", "not-using-it.yaml", "--log-format", "json", cwd=project, env=env(site))
    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    [broken] = [event for event in events if event["event"] == "plugin_broken"]
    assert (broken["plugin"], broken["package"], broken["reason"]) == ("broken", "etl-broken-plugin", MISSING)
    assert (project / "out" / "records.jsonl").read_text(encoding="utf-8") == '{"id": "1", "email": "ada@example.com"}\n'


@pytest.mark.parametrize(
    ("fails_at", "reason"),
    [
        ("import", f"plugin 'broken' (etl-broken-plugin 0.3.0) failed to load and may provide it: {MISSING}"),
        (
            "register_sinks",
            "plugin 'broken' (etl-broken-plugin 0.3.0) failed to load and may provide it: "
            "register_sinks() raised RuntimeError: SHAKY_HOME is not set",
        ),
        (
            # register_sinks answered before register_commands failed: the sink is known to be its.
            "register_commands",
            "sink 'shaky' comes from plugin 'broken' (etl-broken-plugin 0.3.0), which failed to load: "
            "register_commands() raised RuntimeError: no terminal for shaky",
        ),
    ],
)
def test_a_config_that_uses_its_type_says_why_it_is_unknown(site: Path, project: Path, fails_at: str, reason: str) -> None:
    validated = run_etl("validate", "using-it.yaml", cwd=project, env=env(site, ETL_TEST_BROKEN_AT=fails_at))
    assert validated.returncode == 2
    warning, error = validated.stderr.splitlines()
    assert warning.startswith("etl: warning: plugin 'broken' (etl-broken-plugin 0.3.0) failed to load and was skipped: ")
    assert error == f"etl: error: using-it.yaml:6: sink.type: unknown sink type 'shaky' (installed: cxone, discard, http, jsonl); {reason}"


def test_its_command_is_gone_when_its_register_commands_fails(site: Path, project: Path) -> None:
    working = run_etl("shaky", cwd=project, env=env(site, ETL_TEST_BROKEN_AT="nowhere"))
    assert (working.returncode, working.stdout, working.stderr) == (0, "shaky\n", "")

    failing = run_etl("shaky", cwd=project, env=env(site, ETL_TEST_BROKEN_AT="register_commands"))
    assert failing.returncode == 2
    assert "invalid choice: 'shaky'" in failing.stderr and "Traceback" not in failing.stderr
    helped = run_etl("--help", cwd=project, env=env(site, ETL_TEST_BROKEN_AT="register_commands"))
    assert helped.returncode == 0 and "shaky" not in helped.stdout


@pytest.mark.parametrize("name", ["broken", "etl-broken-plugin"])
def test_etl_disable_plugins_switches_it_off_silently(site: Path, project: Path, name: str) -> None:
    off = env(site, ETL_DISABLE_PLUGINS=f"etl_metrics,{name}")
    listed = run_etl("plugins", "--json", cwd=project, env=off)
    assert (listed.returncode, listed.stderr) == (0, "")
    rows = {row["plugin"]: row for row in json.loads(listed.stdout) if row["status"] != "ok"}
    assert rows["broken"]["status"] == "disabled" and rows["broken"]["reason"] == "switched off by ETL_DISABLE_PLUGINS"
    assert rows["etl_metrics"]["package"] == "etl"

    validated = run_etl("validate", "not-using-it.yaml", cwd=project, env=off)
    assert (validated.returncode, validated.stderr) == (0, "")
    refused = run_etl("validate", "using-it.yaml", cwd=project, env=off)
    assert refused.returncode == 2
    assert refused.stderr.endswith("; plugins switched off by ETL_DISABLE_PLUGINS: etl_metrics, broken\n")
