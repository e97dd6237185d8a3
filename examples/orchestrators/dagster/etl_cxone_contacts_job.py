"""A Dagster job: one op fans out the shards of the pipeline, another runs each shard.

``shards`` yields one dynamic output per shard; ``run_shard`` runs
``etl run CONFIG --shard K/N`` for each (mapped over them, in parallel as the executor
allows). Every shard writes one PostgreSQL state (``state.url`` in the config), so a shard
re-executed after a failure resumes where it stopped.

    dagster job execute -f etl_cxone_contacts_job.py
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from dagster import DynamicOut, DynamicOutput, Failure, OpExecutionContext, RetryRequested, job, op

#: How many shards.
SHARDS = 4
#: The pipeline's config, next to this file.
CONFIG = str(Path(__file__).resolve().parent / "cxone-contacts-shared.yaml")
#: etl's exit code when the destination looks unavailable: try again later (docs/exit-codes.md).
EXIT_UNAVAILABLE = 75


def shard_command(index: int, count: int = SHARDS) -> list[str]:
    """The command line of one shard."""
    return ["etl", "run", CONFIG, "--shard", f"{index}/{count}", "--no-progress"]


@op(out=DynamicOut(int))
def shards():
    """One output per shard: its index."""
    for index in range(SHARDS):
        yield DynamicOutput(index, mapping_key=f"shard_{index}")


@op
def run_shard(context: OpExecutionContext, index: int) -> int:
    """Run one shard to its end; its JSON log lines go to the op's stdout."""
    command = shard_command(index)
    context.log.info(f"running {' '.join(command)}")
    code = subprocess.run(command, check=False).returncode
    if code == EXIT_UNAVAILABLE:
        raise RetryRequested(max_retries=3, seconds_to_wait=300)
    if code != 0:
        raise Failure(f"shard {index}/{SHARDS} exited with {code} (docs/exit-codes.md)")
    return index


@job
def etl_cxone_contacts():
    shards().map(run_shard)
