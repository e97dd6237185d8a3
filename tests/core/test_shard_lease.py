"""The run lease of a shard: shared with the other shards of the run, its own exclusively."""

from __future__ import annotations

import json
import os

import pytest

from etl_core import RunLockedError
from etl_core._lease import LEASE_FILE, take_lease
from etl_core._shard import Shard


def test_shards_of_a_run_work_side_by_side(tmp_path):
    leases = [take_lease(str(tmp_path), pipeline="p", run_id=f"run-{k}", shard=Shard(k, 3)) for k in range(3)]
    for k in range(3):
        assert json.loads((tmp_path / f"run-shard-{k}-of-3.lock").read_text())["run_id"] == f"run-{k}"
    for lease in leases:
        lease.release()


def test_a_shard_is_run_by_one_process_at_a_time(tmp_path):
    first = take_lease(str(tmp_path), pipeline="p", run_id="run-1", shard=Shard(1, 2))
    with pytest.raises(RunLockedError, match=f"process {os.getpid()} .* run run-1"):
        take_lease(str(tmp_path), pipeline="p", run_id="run-2", shard=Shard(1, 2))
    first.release()
    take_lease(str(tmp_path), pipeline="p", run_id="run-2", shard=Shard(1, 2)).release()


def test_a_run_of_every_record_and_a_shard_exclude_each_other(tmp_path):
    shard = take_lease(str(tmp_path), pipeline="p", run_id="shard-run", shard=Shard(0, 2))
    with pytest.raises(RunLockedError) as refused:
        take_lease(str(tmp_path), pipeline="p", run_id="whole-run")
    # The message names the shard that runs, not an earlier holder of run.lock.
    assert "run-shard-0-of-2.lock" in str(refused.value) and "run shard-run" in str(refused.value)
    shard.release()  # releases its share of run.lock too
    whole = take_lease(str(tmp_path), pipeline="p", run_id="whole-run")
    with pytest.raises(RunLockedError, match="run whole-run"):
        take_lease(str(tmp_path), pipeline="p", run_id="shard-run", shard=Shard(1, 2))
    # Refused, the shard holds nothing: its own lease is free.
    assert not (tmp_path / "run-shard-1-of-2.lock").exists() or _free(tmp_path / "run-shard-1-of-2.lock")
    whole.release()
    assert json.loads((tmp_path / LEASE_FILE).read_text())["run_id"] == "whole-run"


def _free(path) -> bool:
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
