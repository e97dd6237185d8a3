"""Prometheus metrics (etl_metrics): the hooks, the endpoint, and a real `etl run` scraped while it runs."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from etl_core import ConfigError, hookimpl
from etl_core.cli import main
from etl_core.testing import ListSource, RecordingSink, plugin_of, run_pipeline_from_dict
from etl_cxone.sandbox import SandboxSettings, contact_id, run_sandbox_in_thread
from tests.conftest import ETL, pipeline_config, run_etl

etl_metrics = pytest.importorskip("etl_metrics", reason="etl_metrics is not importable: add it to the package list in pyproject.toml")
text_string_to_metric_families = pytest.importorskip("prometheus_client.parser").text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=2)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(
    ok: int, *, by_status: dict[str, int], retries: int = 0, throttled: int = 0, paused: float = 0.0, rate: float | None = None,
    outages: int = 0, outage_s: float = 0.0, probes: int = 0,
) -> dict[str, Any]:
    return {
        "records": {"read": ok + 3, "ok": ok, "rejected": 1, "failed": 2, "skipped": 0, "in_flight": 4},
        "requests": {
            "attempts": sum(by_status.values()), "retries": retries, "throttled": throttled, "by_status": by_status,
            "outages": outages, "probes": probes,
        },
        "outage_s": outage_s,
        "retry_budget": {"balance": 480, "capacity": 500},
        "rate_limit_per_s": rate,
        "paused_s": 1.5,
        "paused_total_s": paused,
        "progress": {"done": 250, "total": 1000},
        "elapsed_s": 3.0,
    }


@pytest.fixture
def metrics_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(etl_metrics.ENV_ADDR, raising=False)
    monkeypatch.setenv(etl_metrics.ENV_PORT, "0")  # any free port
    yield
    for run_id in list(etl_metrics._exporters):
        etl_metrics.run_finished(run_id=run_id, report={})


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"ETL_METRICS_PORT": ""}, None),
        ({"ETL_METRICS_PORT": "9464"}, ("127.0.0.1", 9464)),
        ({"ETL_METRICS_ADDR": "0.0.0.0:9100"}, ("0.0.0.0", 9100)),
        ({"ETL_METRICS_ADDR": "[::1]:9100"}, ("::1", 9100)),
        ({"ETL_METRICS_ADDR": "localhost:9100", "ETL_METRICS_PORT": "9464"}, ("localhost", 9464)),
    ],
)
def test_metrics_address(env: dict[str, str], expected: tuple[str, int] | None) -> None:
    assert etl_metrics.metrics_address(env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ETL_METRICS_PORT": "http"}, "ETL_METRICS_PORT: the port must be a number"),
        ({"ETL_METRICS_PORT": "70000"}, "ETL_METRICS_PORT: the port must be a number"),
        ({"ETL_METRICS_ADDR": "9464"}, "ETL_METRICS_ADDR must be host:port"),
        ({"ETL_METRICS_ADDR": ":9464"}, "ETL_METRICS_ADDR must be host:port"),
        ({"ETL_METRICS_ADDR": "127.0.0.1:x"}, "ETL_METRICS_ADDR: the port must be a number"),
    ],
)
def test_bad_settings_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        etl_metrics.metrics_address(env)


@pytest.mark.parametrize(
    ("env", "port", "expected"),
    [
        ({}, 0, ("127.0.0.1", 0)),
        ({"ETL_METRICS_PORT": "9464"}, 9500, ("127.0.0.1", 9500)),
        ({"ETL_METRICS_ADDR": "0.0.0.0:9100", "ETL_METRICS_PORT": "9464"}, 9500, ("0.0.0.0", 9500)),
    ],
)
def test_a_command_line_port_wins_over_the_variables(env: dict[str, str], port: int, expected: tuple[str, int]) -> None:
    assert etl_metrics.metrics_address(env, port=port) == expected


def test_metrics_port_must_be_a_port(tmp_path: Path) -> None:
    refused = run_etl("run", "pipeline.yaml", "--metrics-port", "http", cwd=tmp_path)
    assert refused.returncode == 2
    assert "argument --metrics-port: not a port number (0 to 65535): 'http'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_option_reaches_the_plugin_without_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(etl_metrics.ENV_PORT, raising=False)
    monkeypatch.delenv(etl_metrics.ENV_ADDR, raising=False)
    monkeypatch.setattr(etl_metrics, "_command_line_port", None)  # put back after the command sets it
    (tmp_path / "in.csv").write_text("id\n1\n2\n3\n", encoding="utf-8")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"pipeline: option\nsource:\n  type: csv\n  path: {json.dumps(str(tmp_path / 'in.csv'))}\n"
        f"sink:\n  type: discard\noutput:\n  dir: {json.dumps(str(tmp_path / 'out'))}\n",
        encoding="utf-8",
    )

    class Probe:
        """Looks at the metrics and the environment at the end of the run, before the server stops."""

        seen: dict[str, Any] = {}

        @hookimpl(tryfirst=True)
        def run_finished(self, run_id: str) -> None:
            metrics = etl_metrics.exporter(run_id)
            assert metrics is not None and metrics.url is not None, "no metrics served"
            Probe.seen = {
                "env": sorted(name for name in os.environ if name.startswith("ETL_METRICS_")),
                "run_info": value(scrape(metrics.url), "etl_run_info", run_id=run_id, pipeline="option"),
            }

    assert main(["run", str(config), "--metrics-port", "0", "--no-progress", "--log-level", "error"], extra_plugins=(Probe(),)) == 0
    assert Probe.seen == {"env": [], "run_info": 1}
    assert not any(name.startswith("ETL_METRICS_") for name in os.environ)


def test_off_when_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(etl_metrics.ENV_PORT, raising=False)
    monkeypatch.delenv(etl_metrics.ENV_ADDR, raising=False)
    etl_metrics.run_started(run_id="off", pipeline="p", config={})
    assert etl_metrics.exporter("off") is None
    etl_metrics.run_progress(run_id="off", snapshot=snapshot(1, by_status={"200": 1}))
    etl_metrics.run_finished(run_id="off", report={})


# -- the hooks and the endpoint ----------------------------------------------------------


def test_hooks_serve_the_run_metrics(metrics_env: None) -> None:
    etl_metrics.run_started(run_id="run-1", pipeline="contacts", config={})
    metrics = etl_metrics.exporter("run-1")
    assert metrics is not None and metrics.url is not None and metrics.address is not None
    url = metrics.url
    host, port = metrics.address
    assert host == "127.0.0.1" and port > 0 and url == f"http://127.0.0.1:{port}/metrics"

    before = scrape(url)
    assert value(before, "etl_run_info", run_id="run-1", pipeline="contacts") == 1
    assert value(before, "etl_records_total", outcome="ok") == 0  # every outcome is there from the start
    assert value(before, "etl_rate_limit_per_second") == math.inf
    assert value(before, "process_resident_memory_bytes") is not None

    etl_metrics.run_progress(run_id="run-1", snapshot=snapshot(10, by_status={"200": 10, "429": 2}, retries=2, throttled=2, paused=1.5))
    first = scrape(url)
    assert value(first, "etl_records_total", outcome="ok") == 10
    assert value(first, "etl_records_total", outcome="failed") == 2
    assert value(first, "etl_records_total", outcome="rejected") == 1
    assert value(first, "etl_records_read_total") == 13
    assert value(first, "etl_records_in_flight") == 4
    assert value(first, "etl_requests_total", status="200") == 10
    assert value(first, "etl_requests_total", status="429") == 2
    assert value(first, "etl_send_attempts_total") == 12
    assert value(first, "etl_retries_total") == 2
    assert value(first, "etl_throttled_total") == 2
    assert value(first, "etl_retry_budget_balance") == 480
    assert value(first, "etl_retry_budget_capacity") == 500
    assert value(first, "etl_paused_seconds_total") == 1.5
    assert value(first, "etl_pause_remaining_seconds") == 1.5
    assert value(first, "etl_source_progress_ratio") == 0.25
    assert value(first, "etl_outages_total") == 0 and value(first, "etl_outage_seconds") == 0

    # Snapshots are cumulative: counters follow them, and never go down.
    etl_metrics.run_progress(
        run_id="run-1",
        snapshot=snapshot(
            25, by_status={"200": 25, "429": 2, "503": 1}, retries=3, throttled=3, paused=4.0, rate=12.5, outages=1,
            outage_s=7.5, probes=3,
        ),
    )
    second = scrape(url)
    assert value(second, "etl_outages_total") == 1 and value(second, "etl_outage_probes_total") == 3
    assert value(second, "etl_outage_seconds") == 7.5
    assert value(second, "etl_records_total", outcome="ok") == 25
    assert value(second, "etl_requests_total", status="200") == 25
    assert value(second, "etl_requests_total", status="503") == 1
    assert value(second, "etl_paused_seconds_total") == 4.0
    assert value(second, "etl_rate_limit_per_second") == 12.5

    etl_metrics.run_finished(
        run_id="run-1",
        report={
            "records": {"read": 30, "ok": 27, "rejected": 1, "failed": 2, "skipped": 0, "not_processed": 0},
            "requests": {"attempts": 33, "retries": 3, "throttled": 3, "by_status": {"200": 27, "429": 2, "503": 1}, "paused_s": 4.0},
        },
    )
    assert etl_metrics.exporter("run-1") is None and metrics.url is None
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=2)


def test_each_run_has_its_own_registry(metrics_env: None) -> None:
    etl_metrics.run_started(run_id="a", pipeline="p", config={})
    etl_metrics.run_started(run_id="b", pipeline="p", config={})
    a, b = etl_metrics.exporter("a"), etl_metrics.exporter("b")
    assert a is not None and b is not None and a.registry is not b.registry and a.url != b.url
    etl_metrics.run_progress(run_id="a", snapshot=snapshot(5, by_status={"200": 5}))
    assert value(scrape(a.url), "etl_records_total", outcome="ok") == 5  # type: ignore[arg-type]
    assert value(scrape(b.url), "etl_records_total", outcome="ok") == 0  # type: ignore[arg-type]
    # Nothing lands in prometheus_client's global registry.
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("etl_records_total", {"outcome": "ok"}) is None


def test_port_in_use_is_a_config_error(metrics_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv(etl_metrics.ENV_PORT, str(taken.getsockname()[1]))
        with pytest.raises(ConfigError, match="cannot serve metrics on 127.0.0.1:"):
            etl_metrics.run_started(run_id="busy", pipeline="p", config={})
    assert etl_metrics.exporter("busy") is None


async def test_scraped_during_an_in_process_run(metrics_env: None, tmp_path: Path) -> None:
    sink = RecordingSink(RecordingSink.Options(delay=0.01, fail={"7": "permanent"}))
    config = {
        "pipeline": "metrics-in-process",
        "source": {"type": "list", "items": [{"n": i} for i in range(300)]},
        "run": {"workers": 2},
    }
    seen: list[Samples] = []

    async def watch(url_of_run: list[str]) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                for run_id in list(etl_metrics._exporters):
                    metrics = etl_metrics.exporter(run_id)
                    if metrics is not None and metrics.url:
                        url_of_run.append(metrics.url)
                        try:
                            seen.append(parse((await client.get(metrics.url)).text))
                        except httpx.TransportError:
                            pass  # the run ended between the look-up and the request
                await trio.sleep(0.2)

    urls: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, urls)
        result = await run_pipeline_from_dict(
            config, plugins=[etl_metrics, plugin_of(ListSource)], sink=sink, env={}, tmp_dir=tmp_path
        )
        nursery.cancel_scope.cancel()

    assert result.report["records"]["ok"] == 299 and result.report["records"]["failed"] == 1
    ok = [value(s, "etl_records_total", outcome="ok") for s in seen]
    assert len([v for v in ok if v]) >= 2 and ok == sorted(ok)  # seen moving, never backwards
    assert any(value(s, "etl_records_total", outcome="failed") == 1 for s in seen)
    assert not etl_metrics._exporters  # stopped with the run


# -- the real command --------------------------------------------------------------------


@pytest.mark.parametrize("asked_with", ["option", "variable"])
def test_etl_run_serves_metrics_while_it_runs(tmp_path: Path, asked_with: str) -> None:
    rows = 500
    csv_path = tmp_path / "contacts.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["contact_id", "email"])
        for i in range(rows):
            writer.writerow([contact_id(i), f"User{i}@Example.com"])
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        pipeline_config(
            name="metrics-e2e",
            csv=csv_path,
            out=tmp_path / "out",
            fields={"contactId": "contact_id", "email": "{from: email, normalize: [strip, lower]}"},
            drop_empty=False,
            validate=None,
            workers=2,
        ),
        encoding="utf-8",
    )
    with (
        run_sandbox_in_thread(SandboxSettings(host="127.0.0.1", port=0, latency=0.02, seed_count=rows)) as sandbox,
        socket.socket() as taken,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CXONE_", "ETL_METRICS_"))}
        env.update(
            CXONE_BASE_URL=sandbox.url,
            CXONE_TOKEN_URL=sandbox.url + "/oauth/token",
            CXONE_CLIENT_ID="sandbox-client",
            CXONE_CLIENT_SECRET="sandbox-secret",
        )
        command = [*ETL, "run", str(config), "--log-format", "json", "--no-progress"]
        if asked_with == "option":
            # The option wins over the variable, here set to a port that cannot be served.
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            env["ETL_METRICS_PORT"] = str(taken.getsockname()[1])
            command += ["--metrics-port", "0"]  # any free port: the log says which
            expected_url = None
        else:
            port = free_port()
            env["ETL_METRICS_PORT"] = str(port)
            expected_url = f"http://127.0.0.1:{port}/metrics"
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            url = _serving_url(process)
            scrapes = _scrape_while_running(process, url)
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert process.returncode == 0, stderr
    if expected_url is None:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url), url
    else:
        assert url == expected_url
    ok = [value(s, "etl_records_total", outcome="ok") or 0 for s in scrapes]
    sent = [sum(v for (name, labels), v in s.items() if name == "etl_requests_total" and dict(labels)["status"].startswith("2")) for s in scrapes]
    assert ok == sorted(ok) and sent == sorted(sent), "counters went backwards"
    assert 0 < ok[0] < ok[-1] < rows and 0 < sent[0] < sent[-1], f"not seen increasing during the run: ok={ok} sent={sent}"
    last = scrapes[-1]
    assert value(last, "etl_run_info", pipeline="metrics-e2e", run_id=_run_id(last)) == 1
    assert value(last, "etl_retry_budget_capacity") == 500
    assert value(last, "etl_records_total", outcome="failed") == 0
    with pytest.raises(httpx.TransportError):  # the server went away with the run
        httpx.get(url, timeout=2)


def _serving_url(process: subprocess.Popen[str]) -> str:
    """Read the run's JSON log lines up to ``metrics_serving``; return the URL it names."""
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "metrics_serving":
            return event["url"]
    pytest.fail(f"`etl run` ended (exit code {process.wait()}) without serving metrics: {process.communicate()[1][-2000:]}")


def _scrape_while_running(process: subprocess.Popen[str], url: str) -> list[Samples]:
    """Scrape until two scrapes during the run show ok records increasing (bounded)."""
    deadline = time.monotonic() + 60
    scrapes: list[Samples] = []
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            samples = scrape(url)
        except httpx.TransportError:
            time.sleep(0.05)  # not serving yet
            continue
        if value(samples, "etl_records_total", outcome="ok"):
            scrapes.append(samples)
            if len({value(s, "etl_records_total", outcome="ok") for s in scrapes}) >= 2:
                return scrapes
        time.sleep(0.2)
    out, err = process.communicate(timeout=60) if process.poll() is not None else ("", "")
    pytest.fail(
        f"no increasing metrics scraped at {url} while `etl run` ran (exit code {process.poll()}); "
        f"etl_metrics must be a registered plugin. scrapes={len(scrapes)} stderr={err[-2000:]} stdout={out[-2000:]}"
    )


def _run_id(samples: Samples) -> str:
    (labels,) = [dict(labels) for (name, labels) in samples if name == "etl_run_info"]
    return labels["run_id"]
