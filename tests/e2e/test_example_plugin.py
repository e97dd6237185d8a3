"""The example third-party plugin (examples/etl-jsonl-source), installed and used for real."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import install_distribution, run_etl

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT_ROOT / "examples" / "etl-jsonl-source"

PIPELINE = """\
pipeline: jsonl-example
key: id
source:
  type: jsonl
  path: {input}
transforms:
  - type: map
    fields:
      id: id
      email: {{from: email, normalize: [strip, lower]}}
      source: {{value: jsonl}}
sink:
  type: jsonl
  path: {output}
run:
  workers: 2
output:
  dir: {out}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed into its own directory (use it with PYTHONPATH)."""
    return install_distribution(EXAMPLE, tmp_path_factory.mktemp("example-plugin"))


def test_listed_by_etl_plugins(site: Path, tmp_path: Path) -> None:
    listed = run_etl("plugins", "--json", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert listed.returncode == 0, listed.stderr
    rows = {(row["kind"], row["name"]): row for row in json.loads(listed.stdout)}
    row = rows[("source", "jsonl")]
    assert (row["package"], row["version"], row["plugin"]) == ("etl-jsonl-source", "0.1.0", "jsonl_source")
    assert row["description"].startswith("Read records from a JSON Lines file")
    # The built-in jsonl sink is still there: names are unique per kind.
    assert rows[("sink", "jsonl")]["plugin"] == "etl_files"


def test_not_there_without_the_package(tmp_path: Path) -> None:
    listed = run_etl("plugins", "--json", cwd=tmp_path)
    assert ("source", "jsonl") not in {(row["kind"], row["name"]) for row in json.loads(listed.stdout)}


def test_etl_run_with_the_installed_source(site: Path, tmp_path: Path) -> None:
    lines = [
        '{"id": "a1", "email": " Ada@Example.COM "}',
        '{"id": "a2", "email": "grace@example.com", "ignored": [1, 2]}',
        '{"id": "a3", "email": "linus@example.com"',  # truncated: not valid JSON
        "",
        '["not", "an", "object"]',
        '{"id": "a6", "email": "barbara@example.com"}',
    ]
    (tmp_path / "input.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out" / "records.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        PIPELINE.format(input=tmp_path / "input.jsonl", output=output, out=tmp_path / "out"), encoding="utf-8"
    )
    env = {"PYTHONPATH": str(site)}

    validated = run_etl("validate", str(config), cwd=tmp_path, env=env)
    assert validated.returncode == 0, validated.stderr

    ran = run_etl("run", str(config), "--log-format", "json", cwd=tmp_path, env=env)
    assert ran.returncode == 1, ran.stderr  # two lines rejected
    written = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert sorted(written, key=lambda r: r["id"]) == [
        {"id": "a1", "email": "ada@example.com", "source": "jsonl"},
        {"id": "a2", "email": "grace@example.com", "source": "jsonl"},
        {"id": "a6", "email": "barbara@example.com", "source": "jsonl"},
    ]
    with open(tmp_path / "out" / "rejects.csv", newline="", encoding="utf-8") as f:
        rejects = {row["_line"]: row for row in csv.DictReader(f)}
    assert set(rejects) == {"3", "5"}
    assert rejects["3"]["_stage"] == "source" and rejects["3"]["_plugin"] == "jsonl"
    assert rejects["3"]["_reason"].startswith("not valid JSON: Expecting ',' delimiter")
    assert rejects["3"]["_text"] == lines[2]
    assert rejects["5"]["_reason"] == "expected a JSON object, got an array"
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["records"]["ok"] == 3 and report["records"]["rejected"] == 2


def test_missing_input_is_a_config_error(site: Path, tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        PIPELINE.format(input=tmp_path / "nope.jsonl", output=tmp_path / "o.jsonl", out=tmp_path / "out"), encoding="utf-8"
    )
    ran = run_etl("run", str(config), cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert ran.returncode == 2
    assert "source.path: file not found" in ran.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_the_example_own_tests_pass(site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/etl-jsonl-source/tests"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert " passed" in ran.stdout and "failed" not in ran.stdout
