"""An Airflow DAG: one task group whose task is mapped over the shards of the pipeline.

Dynamic task mapping (``.expand``) makes one task instance per shard, each running
``etl run CONFIG --shard K/N`` on a worker; they all write one PostgreSQL state
(``state.url`` in the config), so a task retried on another worker resumes its shard.
A shard's exit code fails its task: 1 (rows rejected or failed: see its rejects file),
2 (the config: retrying does not help), 75 (the API is down: a retry later resumes).

Copy this file into the DAGs folder, with the config next to it; set the CXONE_* and
ETL_STATE_URL variables on the workers (or in ``env`` below, from Airflow connections).
"""

from __future__ import annotations

import datetime
import shlex
from pathlib import Path

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.utils.task_group import TaskGroup

#: How many shards: as many task instances run at once as the pool allows.
SHARDS = 4
#: The pipeline's config, next to this file.
CONFIG = str(Path(__file__).resolve().parent / "cxone-contacts-shared.yaml")


def shard_command(index: int, count: int = SHARDS) -> str:
    """The command of one shard's task."""
    return shlex.join(["etl", "run", CONFIG, "--shard", f"{index}/{count}", "--no-progress"])


with DAG(
    dag_id="etl_cxone_contacts",
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    default_args={"retries": 3, "retry_delay": datetime.timedelta(minutes=5)},
    tags=["etl"],
) as dag:
    with TaskGroup(group_id="cxone_contacts", tooltip="one task per shard"):
        BashOperator.partial(task_id="shard", append_env=True).expand(
            bash_command=[shard_command(index) for index in range(SHARDS)]
        )
