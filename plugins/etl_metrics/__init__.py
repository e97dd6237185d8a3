"""Prometheus metrics of a running pipeline, served over HTTP while it runs.

Off unless asked for: ``etl run --metrics-port PORT`` (an option this plugin adds), or
the variables ``ETL_METRICS_PORT`` (e.g. ``9464``) and/or ``ETL_METRICS_ADDR``
(``host:port``, e.g. ``0.0.0.0:9464`` or ``[::1]:9464``). With only a port, the server
listens on 127.0.0.1. A port given with ``--metrics-port`` wins over both variables, and
one in ``ETL_METRICS_PORT`` over the one in ``ETL_METRICS_ADDR``. Port 0 picks a free
port (logged in the ``metrics_serving`` event). The variables are read when a run starts.

While the run goes on, ``http://HOST:PORT/metrics`` serves (Prometheus text format):

* ``etl_records_total{outcome}``: records with a final outcome (ok, rejected, failed, skipped);
* ``etl_records_read_total`` and ``etl_records_in_flight``;
* ``etl_requests_total{status}``: send attempts answered with each status code;
* ``etl_send_attempts_total``, ``etl_retries_total``, ``etl_throttled_total`` (429/503 answers);
* ``etl_retry_budget_balance`` and ``etl_retry_budget_capacity``;
* ``etl_rate_limit_per_second`` (the client-side limit; +Inf when unlimited);
* ``etl_paused_seconds_total`` (time spent in shared Retry-After pauses) and
  ``etl_pause_remaining_seconds``;
* ``etl_outages_total``, ``etl_outage_probes_total`` and ``etl_outage_seconds`` (how long
  the destination has been down now; 0 while it is up);
* ``etl_source_progress_ratio`` (share of the input read; NaN when its size is unknown);
* ``etl_run_info{run_id, pipeline}`` and ``etl_run_start_time_seconds``;
* the standard ``process_*`` and ``python_info`` metrics.

The figures come from the run's progress snapshots (about once a second), not from a
per-record hook, so the plugin costs nothing per record, whether it is on or off. Each run
has its own :class:`prometheus_client.CollectorRegistry`; the server stops when the run ends.
Metrics never carry record keys, field values or credentials.

Needs the ``prometheus_client`` package, imported only when metrics are turned on.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import socketserver
import threading
import time
from collections.abc import Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog

from etl_core import CommandLine, ConfigError, hookimpl

__all__ = [
    "ENV_ADDR",
    "ENV_PORT",
    "MetricsExporter",
    "command_started",
    "exporter",
    "metrics_address",
    "register_commands",
    "run_finished",
    "run_progress",
    "run_started",
]

#: The port to serve metrics on (enables them).
ENV_PORT = "ETL_METRICS_PORT"
#: ``host:port`` to serve metrics on (enables them).
ENV_ADDR = "ETL_METRICS_ADDR"

_DEFAULT_HOST = "127.0.0.1"
#: Outcomes counted in ``etl_records_total``, as named in the progress snapshot.
_OUTCOMES = ("ok", "rejected", "failed", "skipped")
#: How often the server thread checks whether it must stop (bounds the wait at the end of a run).
_POLL_INTERVAL = 0.05

#: The exporter of each running run, by run id.
_exporters: dict[str, MetricsExporter] = {}
_lock = threading.Lock()
#: ``--metrics-port`` of the ``etl run`` command line of this process (None: not given).
_command_line_port: int | None = None


def metrics_address(env: Mapping[str, str] | None = None, *, port: int | None = None) -> tuple[str, int] | None:
    """Return the (host, port) metrics are to be served on, or None when they are off.

    Args:
        env: The environment (default: ``os.environ``).
        port: A port given on the command line: it turns metrics on, and wins over the
            ports of both variables.

    Raises:
        ConfigError: A variable is set to something that is not an address or a port.
    """
    env = os.environ if env is None else env
    addr = env.get(ENV_ADDR, "").strip()
    port_text = env.get(ENV_PORT, "").strip()
    if not addr and not port_text and port is None:
        return None
    host, chosen = _DEFAULT_HOST, None
    if addr:
        host, chosen = _parse_addr(addr)
    if port_text:
        chosen = _parse_port(port_text, ENV_PORT)
    if port is not None:
        chosen = port
    assert chosen is not None
    return host, chosen


def _parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host:
        raise ConfigError(f"{ENV_ADDR} must be host:port, e.g. 127.0.0.1:9464 (all interfaces: 0.0.0.0:9464)")
    return host, _parse_port(port, ENV_ADDR)


def _parse_port(text: str, variable: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"{variable}: the port must be a number from 0 to 65535")
    return port


def _port_argument(text: str) -> int:
    """``--metrics-port``'s type: a usage error (exit code 2) unless it is a port number."""
    try:
        return _parse_port(text, "--metrics-port")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r}") from None


class MetricsExporter:
    """The metrics of one run and the HTTP server that serves them.

    Args:
        run_id: The run's id (a label of ``etl_run_info``).
        pipeline: The pipeline's name (a label of ``etl_run_info``).

    Raises:
        ConfigError: ``prometheus_client`` is not installed.
    """

    def __init__(self, run_id: str, pipeline: str) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigError(
                f"metrics (--metrics-port, {ENV_PORT}, {ENV_ADDR}) need the prometheus_client package "
                "(pip install prometheus_client)"
            ) from None
        self.registry = registry = prom.CollectorRegistry()
        prom.ProcessCollector(registry=registry)
        prom.PlatformCollector(registry=registry)
        info = prom.Info("etl_run", "The run being measured.", registry=registry)
        info.info({"run_id": run_id, "pipeline": pipeline})
        prom.Gauge("etl_run_start_time_seconds", "When the run started (Unix time).", registry=registry).set(time.time())

        records = prom.Counter("etl_records", "Records with a final outcome.", ["outcome"], registry=registry)
        self._records = {outcome: records.labels(outcome) for outcome in _OUTCOMES}
        self._read = prom.Counter("etl_records_read", "Records read from the source.", registry=registry)
        self._in_flight = prom.Gauge("etl_records_in_flight", "Records being sent now.", registry=registry)
        self._requests = prom.Counter("etl_requests", "Send attempts answered with each status code.", ["status"], registry=registry)
        self._attempts = prom.Counter("etl_send_attempts", "Send attempts, retries included.", registry=registry)
        self._retries = prom.Counter("etl_retries", "Sends retried after a transient or throttled failure.", registry=registry)
        self._throttled = prom.Counter("etl_throttled", "Sends answered with a throttling status (429, 503).", registry=registry)
        self._budget = prom.Gauge("etl_retry_budget_balance", "Tokens left in the shared retry budget.", registry=registry)
        self._capacity = prom.Gauge("etl_retry_budget_capacity", "Capacity of the shared retry budget.", registry=registry)
        self._rate = prom.Gauge(
            "etl_rate_limit_per_second", "Current client-side rate limit (+Inf when unlimited).", registry=registry
        )
        self._paused = prom.Counter("etl_paused_seconds", "Seconds spent in shared pauses (Retry-After).", registry=registry)
        self._pause_left = prom.Gauge("etl_pause_remaining_seconds", "Seconds left in the current shared pause.", registry=registry)
        self._outages = prom.Counter("etl_outages", "Times the destination was taken to be down.", registry=registry)
        self._outage_now = prom.Gauge(
            "etl_outage_seconds", "Seconds the current outage has lasted (0 while the destination is up).", registry=registry
        )
        self._probes = prom.Counter("etl_outage_probes", "Requests sent to probe a destination that is down.", registry=registry)
        self._progress = prom.Gauge("etl_source_progress_ratio", "Share of the input read (NaN when unknown).", registry=registry)
        self._rate.set(math.inf)
        self._progress.set(math.nan)
        self._make_wsgi_app = prom.make_wsgi_app
        self._last: dict[str, float] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- figures ---------------------------------------------------------------------

    def update(self, snapshot: Mapping[str, Any]) -> None:
        """Bring the metrics up to date with a ``run_progress`` snapshot (cumulative figures)."""
        records = snapshot.get("records") or {}
        for outcome, child in self._records.items():
            self._advance(child, f"records.{outcome}", records.get(outcome))
        self._advance(self._read, "records.read", records.get("read"))
        if records.get("in_flight") is not None:
            self._in_flight.set(records["in_flight"])

        requests = snapshot.get("requests") or {}
        self._advance(self._attempts, "requests.attempts", requests.get("attempts"))
        self._advance(self._retries, "requests.retries", requests.get("retries"))
        self._advance(self._throttled, "requests.throttled", requests.get("throttled"))
        self._advance(self._outages, "requests.outages", requests.get("outages"))
        self._advance(self._probes, "requests.probes", requests.get("probes"))
        for status, count in (requests.get("by_status") or {}).items():
            self._advance(self._requests.labels(str(status)), f"status.{status}", count)

        budget = snapshot.get("retry_budget") or {}
        if budget.get("balance") is not None:
            self._budget.set(budget["balance"])
        if budget.get("capacity") is not None:
            self._capacity.set(budget["capacity"])
        if "rate_limit_per_s" in snapshot:
            rate = snapshot["rate_limit_per_s"]
            self._rate.set(math.inf if rate is None else rate)
        self._advance(self._paused, "paused_total_s", snapshot.get("paused_total_s"))
        if snapshot.get("paused_s") is not None:
            self._pause_left.set(snapshot["paused_s"])
        if snapshot.get("outage_s") is not None:
            self._outage_now.set(snapshot["outage_s"])
        progress = snapshot.get("progress") or {}
        done, total = progress.get("done"), progress.get("total")
        if done is not None and total:
            self._progress.set(min(1.0, done / total))

    def _advance(self, counter: Any, name: str, value: float | None) -> None:
        """Move a counter to a cumulative value (counters only go up)."""
        if value is None:
            return
        delta = value - self._last.get(name, 0)
        if delta > 0:
            counter.inc(delta)
            self._last[name] = value

    # -- serving ---------------------------------------------------------------------

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` from a background thread.

        Raises:
            ConfigError: The address cannot be used (e.g. the port is taken).
        """
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

            class Server(_ThreadingWSGIServer):
                address_family = family

            server = make_server(host, port, self._make_wsgi_app(self.registry), Server, handler_class=_QuietHandler)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"cannot serve metrics on {_join(host, port)}: {reason} "
                f"(choose another address with --metrics-port, {ENV_PORT} or {ENV_ADDR})"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL}, name="etl-metrics", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int] | None:
        """The (host, port) being served, or None when not serving."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str | None:
        """The metrics URL, or None when not serving."""
        address = self.address
        return None if address is None else f"http://{_join(*address)}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def exporter(run_id: str) -> MetricsExporter | None:
    """Return the exporter of a running run, or None (metrics off, or the run is over)."""
    return _exporters.get(run_id)


# -- hooks -----------------------------------------------------------------------------


@hookimpl
def register_commands(cli: CommandLine) -> None:
    """Add ``--metrics-port`` to ``etl run``."""
    cli.command("run").add_argument(
        "--metrics-port",
        type=_port_argument,
        metavar="PORT",
        help=f"serve Prometheus metrics on 127.0.0.1:PORT during the run (0 picks a free port; see {ENV_ADDR})",
    )


@hookimpl
def command_started(command: str, options: argparse.Namespace) -> None:
    """Keep the ``--metrics-port`` of an ``etl run`` command line for its run."""
    global _command_line_port
    _command_line_port = options.metrics_port if command == "run" else None


@hookimpl
def run_started(run_id: str, pipeline: str, config: dict[str, Any]) -> None:
    """Start serving metrics when ``--metrics-port``, ``ETL_METRICS_PORT`` or ``ETL_METRICS_ADDR`` asks for it."""
    address = metrics_address(port=_command_line_port)
    if address is None:
        return
    metrics = MetricsExporter(run_id, pipeline)
    metrics.serve(*address)
    with _lock:
        _exporters[run_id] = metrics
    structlog.get_logger("etl").info("metrics_serving", url=metrics.url)


@hookimpl
def run_progress(run_id: str, snapshot: dict[str, Any]) -> None:
    """Update the run's metrics from a progress snapshot."""
    metrics = _exporters.get(run_id)
    if metrics is not None:
        metrics.update(snapshot)


@hookimpl
def run_finished(run_id: str, report: dict[str, Any]) -> None:
    """Bring the metrics to the report's final figures and stop serving."""
    with _lock:
        metrics = _exporters.pop(run_id, None)
    if metrics is None:
        return
    requests = report.get("requests") or {}
    metrics.update(
        {
            "records": {**(report.get("records") or {}), "in_flight": 0},
            "requests": requests,
            "paused_total_s": requests.get("paused_s"),
            "paused_s": 0,
        }
    )
    metrics.close()
