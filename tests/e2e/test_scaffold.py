"""`etl init plugin`: the generated package's own tests pass, and etl finds it once installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import install_distribution, run_etl

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_generated_tests(package: Path) -> subprocess.CompletedProcess[str]:
    """Run the package's tests with this environment's Python, its source on PYTHONPATH: nothing installed."""
    env = {**os.environ, "PYTHONPATH": str(package / "src"), "PYTHONDONTWRITEBYTECODE": "1", "ETL_DISABLE_PLUGINS": ""}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("kind", ["source", "transform", "sink"])
def test_the_generated_package_passes_its_own_tests(tmp_path: Path, kind: str) -> None:
    created = run_etl("init", "plugin", "acme", "--kind", kind, "--dir", "acme-plugin", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    package = tmp_path / "acme-plugin"
    assert {str(path.relative_to(package)) for path in package.rglob("*") if path.is_file()} == {
        "pyproject.toml", "README.md", "src/etl_acme/__init__.py", f"src/etl_acme/_{kind}.py", "tests/test_acme.py",
    }
    assert str(Path("acme-plugin", "src", "etl_acme", f"_{kind}.py")) in created.stdout

    tested = run_generated_tests(package)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert " passed" in tested.stdout and "failed" not in tested.stdout and "skipped" not in tested.stdout


def test_the_pyproject_declares_the_entry_point_and_depends_on_etl(tmp_path: Path) -> None:
    created = run_etl("init", "plugin", "My-Webhook", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    pyproject = tomllib.loads((tmp_path / "etl-my-webhook" / "pyproject.toml").read_text(encoding="utf-8"))
    ours = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert pyproject["project"]["name"] == "etl-my-webhook"
    assert pyproject["project"]["entry-points"] == {"etl": {"my_webhook": "etl_my_webhook"}}
    assert f"{ours['name']}>={ours['version']}" in pyproject["project"]["dependencies"]
    assert pyproject["tool"]["pytest"]["ini_options"]["trio_mode"] is True
    assert "class MyWebhookSink(Sink):" in (tmp_path / "etl-my-webhook" / "src" / "etl_my_webhook" / "_sink.py").read_text()


def test_etl_finds_the_package_once_installed(tmp_path: Path) -> None:
    """Installed into a directory of its own (on PYTHONPATH, as the other plugin tests do), not into this environment."""
    assert run_etl("init", "plugin", "acme", "--kind", "sink", cwd=tmp_path).returncode == 0
    site = install_distribution(tmp_path / "etl-acme", tmp_path / "install")
    env = {"PYTHONPATH": str(site), "ETL_DISABLE_PLUGINS": ""}
    listed = run_etl("plugins", "--json", cwd=tmp_path, env=env)
    assert (listed.returncode, listed.stderr) == (0, "")
    [row] = [row for row in json.loads(listed.stdout) if row["name"] == "acme"]
    assert (row["kind"], row["package"], row["version"], row["plugin"], row["status"]) == ("sink", "etl-acme", "0.1.0", "acme", "ok")

    (tmp_path / "people.csv").write_text("id,name\n1,Ada\n", encoding="utf-8")
    config = "pipeline: p\nkey: id\nsource: {type: csv, path: people.csv}\nsink:\n  type: acme\n  url: https://api.example.com/records\n  api_key: ${ACME_API_KEY}\n"
    (tmp_path / "pipeline.yaml").write_text(config, encoding="utf-8")
    validated = run_etl("validate", "pipeline.yaml", cwd=tmp_path, env={**env, "ACME_API_KEY": "k3y-for-the-test"})
    assert validated.returncode == 0, validated.stderr
    assert "sink 'acme'" in validated.stdout


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "etl-acme").mkdir()
    (tmp_path / "etl-acme" / "notes.txt").write_text("mine", encoding="utf-8")
    refused = run_etl("init", "plugin", "acme", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == "etl: error: etl-acme already exists: give another --dir, or remove it first\n"
    assert [path.name for path in (tmp_path / "etl-acme").iterdir()] == ["notes.txt"]
    # An empty directory has nothing to overwrite.
    (tmp_path / "empty").mkdir()
    assert run_etl("init", "plugin", "acme", "--dir", "empty", cwd=tmp_path).returncode == 0
    assert (tmp_path / "empty" / "pyproject.toml").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["csv", "--kind", "source"], "etl: error: a source named 'csv' is already installed (see etl plugins): choose another NAME\n"),
        (["9lives"], "'9lives' cannot name a plugin"),
        (["no"], "'no' cannot name a plugin"),  # YAML would read `type: no` as false
    ],
)
def test_unusable_names_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    refused = run_etl("init", "plugin", *args, cwd=tmp_path)
    assert refused.returncode == 2 and message in refused.stderr
    assert list(tmp_path.iterdir()) == []
