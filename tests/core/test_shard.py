"""Shards: the stable key hash, K/N, the shard's file names, and the Reader's share of the records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from etl_core import cli
from etl_core._errors import ConfigError
from etl_core._shard import Shard, parse_shard, resolve_shard, shard_of

KEYS = [f"{i:08x}-0000-4000-8000-{i * 7919:012x}" for i in range(2000)] + ["", "é", "日本語", "\udcff", "a" * 1000]


def _shards_in_subprocess(keys: list[str], count: int, hash_seed: str) -> list[int]:
    """``shard_of`` of each key, computed by another interpreter with another ``hash()`` seed."""
    code = (
        "import json, sys\n"
        "from etl_core._shard import shard_of\n"
        "keys = json.loads(sys.stdin.read())\n"
        f"print(json.dumps([shard_of(key, {count}) for key in keys]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(keys), capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    return json.loads(result.stdout)


def test_the_hash_is_the_same_in_every_process():
    keys = KEYS[:500] + KEYS[-5:]
    here = [shard_of(key, 7) for key in keys]
    assert _shards_in_subprocess(keys, 7, "1") == here
    assert _shards_in_subprocess(keys, 7, "2") == here
    # Not Python's hash(): two seeds put these keys in other places.
    assert len(set(here)) == 7


def test_the_hash_is_blake2b_of_the_utf8_bytes():
    # The documented definition, so that another tool can compute a key's shard.
    import hashlib

    for key in ("00000000-0000-4000-8000-000000000001", "é"):
        expected = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 4
        assert shard_of(key, 4) == expected


@pytest.mark.parametrize("count", range(1, 9))
def test_every_key_belongs_to_exactly_one_shard(count):
    shards = [Shard(index, count) for index in range(count)]
    for key in KEYS:
        assert sum(shard.owns(key) for shard in shards) == 1
    # Records without a key belong to shard 0 only.
    assert [shard.owns(None) for shard in shards] == [index == 0 for index in range(count)]
    # The keys spread over every shard.
    if count > 1:
        sizes = [sum(shard.owns(key) for key in KEYS[:2000]) for shard in shards]
        assert min(sizes) > 2000 / count / 2, sizes


@pytest.mark.parametrize(("text", "shard"), [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 1 / 2 ", Shard(1, 2))])
def test_parse_shard(text, shard):
    assert parse_shard(text) == shard
    assert str(shard) == f"{shard.index}/{shard.count}"


@pytest.mark.parametrize(
    ("text", "says"),
    [("0/0", "from 1 to"), ("3/2", "from 0 to 1"), ("2/2", "from 0 to 1"), ("x", "is not K/N"), ("1/", "is not K/N"),
     ("-1/2", "is not K/N"), ("1/2/3", "is not K/N"), ("", "is not K/N"), ("0/5000", "from 1 to 4096")],
)
def test_parse_shard_refuses(text, says):
    with pytest.raises(ValueError, match=says):
        parse_shard(text)


def test_the_flag_wins_over_the_variable():
    assert resolve_shard(Shard(1, 4), {"ETL_SHARD": "2/4"}) == Shard(1, 4)
    assert resolve_shard(None, {"ETL_SHARD": "2/4"}) == Shard(2, 4)
    assert resolve_shard(None, {"ETL_SHARD": " "}) is None
    assert resolve_shard(None, {}) is None
    with pytest.raises(ConfigError, match="ETL_SHARD: '3/2'"):
        resolve_shard(None, {"ETL_SHARD": "3/2"})


def test_file_names():
    shard = Shard(1, 4)
    assert shard.file_name("report.json") == "report-shard-1-of-4.json"
    assert shard.file_name("run.lock") == "run-shard-1-of-4.lock"
    assert shard.file_name("reports/last.v2.json") == os.path.join("reports", "last.v2-shard-1-of-4.json")
    assert shard.file_name("rejects") == "rejects-shard-1-of-4"


@pytest.mark.parametrize("bad", ["0/0", "3/2", "x"])
def test_the_command_line_refuses_a_bad_shard(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "config.yaml", "--shard", bad])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --shard" in err and "Traceback" not in err


def test_the_command_line_refuses_a_bad_variable(capsys, monkeypatch):
    monkeypatch.setenv("ETL_SHARD", "x")
    assert cli.main(["run", "config.yaml"]) == 2
    assert capsys.readouterr().err == "etl: error: ETL_SHARD: 'x' is not K/N (shard K of N, counted from 0: 0/4, 1/4, 2/4, 3/4)\n"
