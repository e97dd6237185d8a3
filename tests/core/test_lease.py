"""The run lease: one run at a time in an output directory."""

from __future__ import annotations

import json
import os
import socket

import pytest

from etl_core import ConfigError, RunLockedError
from etl_core._lease import LEASE_FILE, take_lease


def test_the_lease_is_exclusive_until_released(tmp_path):
    first = take_lease(str(tmp_path), pipeline="p", run_id="run-1")
    holder = json.loads((tmp_path / LEASE_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["run_id"] == "run-1"
    with pytest.raises(RunLockedError) as refused:
        take_lease(str(tmp_path), pipeline="p", run_id="run-2")
    assert f"process {os.getpid()} on {socket.gethostname()}, run run-1" in str(refused.value)
    # Refused, the second run left the holder's description as it was.
    assert json.loads((tmp_path / LEASE_FILE).read_text())["run_id"] == "run-1"
    first.release()
    first.release()  # twice is harmless
    second = take_lease(str(tmp_path), pipeline="p", run_id="run-2")
    assert json.loads((tmp_path / LEASE_FILE).read_text())["run_id"] == "run-2"
    second.release()


def test_a_link_planted_as_the_lease_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    os.symlink(target, tmp_path / LEASE_FILE)
    with pytest.raises(ConfigError, match="cannot open the run lease"):
        take_lease(str(tmp_path), pipeline="p", run_id="r")
    assert target.read_text() == "keep me"
