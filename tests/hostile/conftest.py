"""Hostile servers and files: the kit of the tests in this package.

``HostileServer`` is a small HTTP/1.1 server on 127.0.0.1 whose answers are scripted
byte by byte (endless, compressed, trickled, malformed). ``run_measured`` runs the real
``etl`` command in a subprocess under a time limit and reports its peak memory; every
test here asserts a clear error, no hang, a peak RSS under ``MAX_RSS_MB``, and that
nothing was sent that should not have been. The worst RSS and wall time of the suite
are printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import resource
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ETL, HOSTILE_RUN
from tests.e2e.conftest import start_sandbox  # noqa: F401 - a fixture for this package

#: What any run here may use at its peak.
MAX_RSS_MB = 150
#: Address space a run may reserve: a safety net that turns a regression into a
#: MemoryError instead of a machine out of memory.
_ADDRESS_SPACE = 3 << 30
_MEASURED: list[tuple[str, float, float]] = []  # (test, peak RSS in MB, seconds)


# -- the server ----------------------------------------------------------------------------


@dataclasses.dataclass
class Request:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Reply:
    """What a responder writes to: the connection, and whether the server is stopping."""

    def __init__(self, connection: socket.socket, stopping: threading.Event) -> None:
        self._connection = connection
        self.stopping = stopping

    def send(self, data: bytes) -> None:
        """Write ``data``; raises OSError once the client has gone."""
        self._connection.sendall(data)

    def trickle(self, data: bytes, interval: float) -> None:
        """Write ``data`` a byte at a time, ``interval`` seconds apart, until done or stopped."""
        for byte in data:
            if self.stopping.wait(interval):
                return
            self.send(bytes([byte]))


Responder = Callable[[Request, Reply], None]


class HostileServer:
    """An HTTP/1.1 server on 127.0.0.1 that answers each path with a scripted responder.

    Args:
        routes: Path prefix -> responder; the longest matching prefix wins. Unmatched
            paths get a 404.
        tls: An SSL context to serve HTTPS with.
    """

    def __init__(self, routes: dict[str, Responder], *, tls: Any = None) -> None:
        self.requests: list[Request] = []
        self._routes = sorted(routes.items(), key=lambda item: -len(item[0]))
        self._stopping = threading.Event()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def paths(self, prefix: str = "") -> list[str]:
        """The paths requested so far that start with ``prefix``."""
        return [request.path for request in self.requests if request.path.startswith(prefix)]

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(30)
        with contextlib.suppress(OSError):
            request = _read_request(connection)
            if request is None:
                return
            self.requests.append(request)
            responder = next((r for prefix, r in self._routes if request.path.startswith(prefix)), None)
            (responder or answer(404))(request, Reply(connection, self._stopping))


def _read_request(connection: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    first, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = first.split(" ", 2)
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return Request(method, path, headers, body)


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} Hostile", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(status: int, body: bytes = b"", **headers: str) -> Responder:
    """A complete answer; header names are given with ``_`` for ``-``."""

    def respond(request: Request, reply: Reply) -> None:
        fields = {name.replace("_", "-"): value for name, value in headers.items()}
        reply.send(_head(status, {"Content-Length": str(len(body)), "Connection": "close", **fields}) + body)

    return respond


def token_answer(token: str = "hostile-token-0123456789", **fields: Any) -> Responder:
    """A 200 token response with ``token`` (and ``fields`` added to its JSON)."""
    body = json.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600, **fields}).encode()
    return answer(200, body, Content_Type="application/json")


def endless(status: int = 200) -> Responder:
    """Headers, then a chunked body that never ends."""
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)

    def respond(request: Request, reply: Reply) -> None:
        reply.send(_head(status, {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}))
        while not reply.stopping.is_set():
            reply.send(chunk)

    return respond


@functools.cache
def gzip_bomb(megabytes: int) -> bytes:
    """A gzip stream of ``megabytes`` MiB of zeros, in about a thousandth of that.

    One MiB of zeros is compressed after a full flush, so that its deflate blocks stand
    alone, and repeated (the stream has no trailer: nobody should read that far).
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (megabytes - 1)


def gzipped(status: int, body: bytes) -> Responder:
    """An answer whose body is sent as gzip (``body`` as is: it may not be gzip at all)."""
    return answer(status, body, Content_Encoding="gzip", Content_Type="application/json")


def slow_headers(interval: float = 0.2) -> Responder:
    """A status line, then a header that grows by a byte every ``interval`` seconds."""

    def respond(request: Request, reply: Reply) -> None:
        reply.send(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        reply.trickle(b"x" * 100_000, interval)

    return respond


def slow_body(body: bytes, interval: float = 0.2) -> Responder:
    """Headers at once, then ``body`` a byte every ``interval`` seconds."""

    def respond(request: Request, reply: Reply) -> None:
        reply.send(_head(200, {"Content-Length": str(len(body)), "Content-Type": "application/json"}))
        reply.trickle(body, interval)

    return respond


@pytest.fixture
def hostile_server() -> Iterator[Callable[..., HostileServer]]:
    """Start hostile servers (``HostileServer`` arguments); stopped after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda routes, **kwargs: stack.enter_context(HostileServer(routes, **kwargs))


@pytest.fixture(scope="session")
def self_signed_pem(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert.pem, key.pem)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    where = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(where / "key.pem"), "-out", str(where / "cert.pem")],
        check=True,
        capture_output=True,
    )
    return where / "cert.pem", where / "key.pem"


@pytest.fixture(scope="session")
def self_signed(self_signed_pem) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed_pem)
    return context


# -- running etl ----------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """How a run of the real `etl` command ended."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float

    def output(self) -> str:
        return self.stdout + self.stderr


def _high_water_kb(pid: int) -> int:
    """The process's peak resident memory so far in KiB (``VmHWM``), or 0 where /proc has none.

    wait4's ``ru_maxrss`` cannot be used: Linux carries the parent's peak over the fork
    and the exec, so every child would report at least this test process's own size.
    Polled while the child runs; the peak is a high-water mark, so only growth in its
    last moments (after the last poll) can be missed.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_measured(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30) -> Outcome:
    """Run `etl` with ``args``; fail the test if it runs over ``timeout`` seconds.

    Returns:
        Its exit code, output, peak resident memory (of this process alone, from
        wait4) and wall time; the last two are also kept for the suite's summary.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CXONE_")}
    full_env.update(env or {})
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        process = subprocess.Popen([*ETL, *args], cwd=cwd, env=full_env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        with contextlib.suppress(AttributeError, OSError):  # Linux only; the child has just started
            resource.prlimit(process.pid, resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))
        hung = False
        peak_kb = 0
        while True:
            peak_kb = max(peak_kb, _high_water_kb(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                hung = True
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        outcome = Outcome(process.returncode, out.read(), err.read(), (peak_kb or usage.ru_maxrss) / 1024, seconds)
    _MEASURED.append((os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0], outcome.peak_rss_mb, seconds))
    if hung:
        pytest.fail(f"etl {' '.join(args)} still ran after {timeout} s; stderr: {outcome.stderr[-2000:]}")
    assert outcome.peak_rss_mb < MAX_RSS_MB, f"peak RSS {outcome.peak_rss_mb:.0f} MB"
    return outcome


def write_pipeline(
    tmp_path: Path,
    *,
    base_url: str,
    token_url: str,
    rows: list[str],
    sink_extra: str = "",
    run_extra: str = "",
    retry_extra: str = "",
    output_extra: str = "",
) -> Path:
    """A pipeline (csv -> map -> cxone) sending ``rows`` (contactId,email lines) to the given URLs.

    ``sink_extra``, ``run_extra`` and ``output_extra`` are YAML lines added to those sections; ``retry_extra``
    is added to the flow mapping of ``run.retry`` (``"retry_after_max: 1"``).
    """
    retry = ", ".join(["max_attempts: 2", "backoff_base: 0.05", "backoff_cap: 0.1", *([retry_extra] if retry_extra else [])])
    csv_path = tmp_path / "contacts.csv"
    csv_path.write_text("contact_id,email\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    text = "\n".join(
        [
            "pipeline: hostile",
            "key: contactId",
            "source:",
            "  type: csv",
            f"  path: {json.dumps(str(csv_path))}",
            "transforms:",
            "  - type: map",
            "    fields: {contactId: contact_id, email: email}",
            "sink:",
            "  type: cxone",
            f"  base_url: {base_url}",
            f"  token_url: {token_url}",
            "  client_id: hostile-client",
            "  client_secret: ${CXONE_CLIENT_SECRET}",
            "  timeout: 2",
            *(f"  {line}" for line in sink_extra.strip().splitlines()),
            "run:",
            "  workers: 1",
            f"  retry: {{{retry}}}",
            *(f"  {line}" for line in run_extra.strip().splitlines()),
            "output:",
            f"  dir: {json.dumps(str(tmp_path / 'out'))}",
            *(f"  {line}" for line in output_extra.strip().splitlines()),
        ]
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def read_out(tmp_path: Path) -> tuple[dict[str, Any], str]:
    """The report of a run written by ``write_pipeline``, and its rejects file's text."""
    out = tmp_path / "out"
    rejects = out / "rejects.csv"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return report, rejects.read_text(encoding="utf-8") if rejects.exists() else ""


@pytest.fixture(autouse=True)
def _publish_measurements(request: pytest.FixtureRequest) -> Iterator[None]:
    """Hand each run's peak RSS and time to the report, which reaches the main process under xdist."""
    already = len(_MEASURED)
    yield
    for test, rss, seconds in _MEASURED[already:]:
        request.node.user_properties.append((HOSTILE_RUN, {"test": test, "rss_mb": rss, "seconds": seconds}))
