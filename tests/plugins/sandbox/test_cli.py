"""The command-line options, generated from the settings."""

from __future__ import annotations

import argparse
import subprocess
import sys

import httpx
import pytest

from etl_cxone.sandbox import SandboxSettings, add_arguments, settings_from_args
from tests.plugins.sandbox.conftest import CID, served_from_the_command_line


def sandbox_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_command_line_arguments():
    parser = sandbox_parser()
    ns = parser.parse_args(
        [
            *("--port", "0", "--client-id", "cid", "--client-secret", "sec"),
            *("--token-lifetime", "30", "--rate-limit", "200", "--burst", "20"),
            *("--retry-after", "http-date", "--rate-limit-headers", "--latency", "0.01"),
            *("--error-rate", "0.1", "--drop-rate", "0.01"),
            *("--seed-count", "500", "--random-seed", "7"),
        ]
    )
    s = settings_from_args(ns)
    assert s == SandboxSettings(
        port=0, client_id="cid", client_secret="sec", token_lifetime=30.0, rate_limit=200.0,
        burst=20.0, retry_after="http-date", rate_limit_headers=True, latency=0.01,
        error_rate=0.1, drop_rate=0.01, seed_count=500, random_seed=7,
    )
    defaults = settings_from_args(parser.parse_args([]))
    assert defaults.rate_limit is None and defaults.host == "127.0.0.1"


def test_defaults_come_from_the_settings_except_the_port():
    parser = sandbox_parser()
    assert settings_from_args(parser.parse_args([])) == SandboxSettings(port=8080)


def test_settings_without_an_option_keep_their_default():
    parser = sandbox_parser()
    options = {action.dest for action in parser._actions}
    assert "outage" not in options and "extra_ids" not in options
    assert settings_from_args(argparse.Namespace(rate_limit=3.0)) == SandboxSettings(rate_limit=3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate-limit", "0"], "argument --rate-limit: input should be greater than 0: '0'"),
        (["--burst", "0.5"], "argument --burst: input should be greater than or equal to 1: '0.5'"),
        (["--latency", "inf"], "argument --latency: input should be a finite number: 'inf'"),
        (["--seed-count", "many"], "argument --seed-count: input should be a valid integer"),
        (["--retry-after", "minutes"], "argument --retry-after: input should be"),
        (["--port", "70000"], "argument --port: input should be less than or equal to 65535"),
        (["--rate-schedule", "20"], "argument --rate-schedule: expected SECONDS:RATE pairs separated by commas: '20'"),
        (["--rate-schedule", "40:1,20:2"], "argument --rate-schedule: the times must increase: '40:1,20:2'"),
        (["--rate-schedule", "20:0"], "argument --rate-schedule: input should be greater than 0: '20:0'"),
        (["--throttle-status", "500"], "argument --throttle-status: input should be 429 or 503: '500'"),
        (["--limit-shape", "leaky_bucket"], "argument --limit-shape: input should be 'token_bucket', "),
        (["--max-in-flight", "0"], "argument --max-in-flight: input should be greater than or equal to 1: '0'"),
    ],
)
def test_bad_values_are_usage_errors(capsys, argv, message):
    parser = sandbox_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_reports_a_bad_value_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "etl_cxone.sandbox", "--error-rate", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "argument --error-rate: input should be less than or equal to 1: '2'" in result.stderr
    assert "Traceback" not in result.stderr


def test_quota_shape_options():
    parser = sandbox_parser()
    ns = parser.parse_args(
        [
            *("--rate-limit", "100", "--burst", "1", "--limit-shape", "sliding_window", "--window", "60"),
            *("--rate-schedule", "20:50, 40:100", "--throttle-penalty", "2", "--max-in-flight", "8"),
            *("--latency-jitter", "0.05", "--retry-after", "milliseconds", "--throttle-status", "503"),
        ]
    )
    assert settings_from_args(ns) == SandboxSettings(
        port=8080, rate_limit=100, burst=1, limit_shape="sliding_window", window=60,
        rate_schedule=((20, 50), (40, 100)), throttle_penalty=2, max_in_flight=8,
        latency_jitter=0.05, retry_after="milliseconds", throttle_status=503,
    )


def test_a_quota_shape_from_the_command_line():
    options = ("--rate-limit", "1", "--burst", "1", "--retry-after", "milliseconds", "--throttle-status", "503")
    with served_from_the_command_line(*options) as (proc, url, _):
        with httpx.Client(base_url=url, timeout=5) as c:
            assert c.get(f"/api/v2/contacts/{CID}").status_code == 401  # admitted, no token
            r = c.get(f"/api/v2/contacts/{CID}")
            assert r.status_code == 503
            assert "retry-after" not in r.headers
            assert 1 <= int(r.headers["retry-after-ms"]) <= 1000
            assert c.get("/sandbox/settings").json()["throttle_status"] == 503
