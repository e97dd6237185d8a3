"""The orchestrator examples (examples/orchestrators/): their commands are `etl` command lines
that the real parser accepts, one per shard, and the config they name passes `etl validate`.

No cluster runs here: the Kubernetes manifest is read as YAML, the Airflow DAG and the
Dagster job are compiled, and their command-building functions are run without Airflow
or Dagster (only the top-level constants and functions of each file are executed).
"""

from __future__ import annotations

import ast
import py_compile
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_core._shard import Shard
from etl_core.cli import _parser
from etl_core.registry import make_plugin_manager
from tests.conftest import run_etl
from tests.e2e.conftest import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples" / "orchestrators"
CONFIG = EXAMPLES / "cxone-contacts-shared.yaml"


def _parse(argv: list[str]) -> Any:
    """``etl ARGV`` parsed by the real parser (argparse exits on a bad command line)."""
    assert argv[0] == "etl", argv
    return _parser(make_plugin_manager()).parse_args(argv[1:])


def _check_shards(commands: list[list[str]], count: int) -> None:
    """One `etl run --shard K/N` per shard, K = 0..N-1, all of the shared config."""
    assert len(commands) == count
    parsed = [_parse(argv) for argv in commands]
    assert all(args.command == "run" for args in parsed)
    assert [args.shard for args in parsed] == [Shard(k, count) for k in range(count)]
    assert {Path(args.config).name for args in parsed} == {CONFIG.name}


def _top_level(path: Path) -> dict[str, Any]:
    """Run a Python file's constants and functions only (not its imports of Airflow or Dagster)."""
    py_compile.compile(str(path), doraise=True)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keep = [
        node for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.FunctionDef)
        and not (isinstance(node, ast.FunctionDef) and node.decorator_list)
    ]
    imports = "import datetime, shlex, subprocess\nfrom pathlib import Path\n"
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(imports, str(path), "exec"), namespace)  # the imports the kept code uses
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def test_the_shared_config_passes_etl_validate(tmp_path):
    env = {
        "CONTACTS_CSV": str(PROJECT_ROOT / "data" / "contacts.csv"),
        "CXONE_BASE_URL": "https://api.example.com", "CXONE_TOKEN_URL": "https://auth.example.com/token",
        "CXONE_CLIENT_ID": "id", "CXONE_CLIENT_SECRET": "secret",
        "ETL_STATE_URL": "postgresql://etl:secret@db.example.com/etl",
    }
    result = run_etl("validate", str(CONFIG), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_kubernetes_indexed_job():
    documents = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "etl-indexed-job.yaml").read_text(encoding="utf-8")))
    config_map, job = documents
    assert config_map["kind"] == "ConfigMap" and job["kind"] == "Job"
    # The config in the ConfigMap is the one validated above.
    assert config_map["data"][CONFIG.name] == CONFIG.read_text(encoding="utf-8")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    (container,) = spec["template"]["spec"]["containers"]
    mounted = {mount["mountPath"] for mount in container["volumeMounts"]}
    argv = container["command"] + container["args"]
    config_path = Path(argv[2])
    assert str(config_path.parent) in mounted and config_path.name == CONFIG.name
    # Kubernetes puts each pod's completion index in JOB_COMPLETION_INDEX and expands $(VAR) in args.
    commands = [[arg.replace("$(JOB_COMPLETION_INDEX)", str(k)) for arg in argv] for k in range(spec["completions"])]
    _check_shards(commands, spec["completions"])
    env = {variable["name"] for variable in container["env"]}
    assert {"CONTACTS_CSV", "CXONE_CLIENT_ID", "CXONE_CLIENT_SECRET", "ETL_STATE_URL"} <= env


def test_airflow_dag():
    path = EXAMPLES / "airflow" / "etl_cxone_contacts_dag.py"
    namespace = _top_level(path)
    count = namespace["SHARDS"]
    _check_shards([shlex.split(namespace["shard_command"](k)) for k in range(count)], count)
    source = path.read_text(encoding="utf-8")
    # A task group whose task is mapped over the shards' commands.
    assert "TaskGroup(" in source and ".expand(" in source and "shard_command(index) for index in range(SHARDS)" in source


def test_dagster_job():
    path = EXAMPLES / "dagster" / "etl_cxone_contacts_job.py"
    namespace = _top_level(path)
    count = namespace["SHARDS"]
    _check_shards([namespace["shard_command"](k) for k in range(count)], count)
    source = path.read_text(encoding="utf-8")
    assert "DynamicOut(" in source and ".map(run_shard)" in source
    assert namespace["EXIT_UNAVAILABLE"] == 75


@pytest.mark.parametrize("bad", ["$(JOB_COMPLETION_INDEX)", "4/4"])
def test_a_wrong_shard_is_caught(bad):
    # The check above would catch a manifest that forgot the expansion, or counted from 1.
    with pytest.raises(SystemExit):
        _parse(["etl", "run", str(CONFIG), "--shard", bad])
