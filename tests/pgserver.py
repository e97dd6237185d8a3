"""A private PostgreSQL server for the tests: initdb into a temporary directory, 127.0.0.1, a free port.

The server's binaries come from the OS packages (``tools/ensure-postgres`` installs them
on a machine without them). PostgreSQL refuses to run as root: as root, the server runs
as the ``postgres`` user, in a directory that user owns.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import socket
import subprocess
import tempfile

#: The superuser's password and the test role's (password authentication over TCP, as in production).
ADMIN_PASSWORD = "admin-pw-for-tests"
ROLE, ROLE_PASSWORD = "etl", "etl-pw-for-tests"


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    """A running server: connect as :data:`ROLE` with :data:`ROLE_PASSWORD`."""

    host: str
    port: int
    directory: str

    def url(self, database: str = "etl", *, password: str = ROLE_PASSWORD) -> str:
        return f"postgresql://{ROLE}:{password}@{self.host}:{self.port}/{database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{ADMIN_PASSWORD}@{self.host}:{self.port}/{database}"


def _bin_dir() -> str:
    """Where pg_ctl is: on PATH, or in Debian's /usr/lib/postgresql/N/bin (newest first)."""
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[-3]), reverse=True)
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed (no pg_ctl): run tools/ensure-postgres")
    return os.path.dirname(candidates[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> PostgresServer:
    """Initialise and start a server; :func:`stop_server` stops it and removes its files.

    Raises:
        RuntimeError: PostgreSQL is not installed, or the server did not start (with its log).
    """
    bin_dir = _bin_dir()
    directory = tempfile.mkdtemp(prefix="etl-test-pg-")
    as_user: list[str] = []
    if os.getuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(directory, "data"), os.path.join(directory, "server.log")
    pwfile = os.path.join(directory, "pw")
    with open(pwfile, "w", encoding="utf-8") as f:
        f.write(ADMIN_PASSWORD)
    if as_user:
        shutil.chown(pwfile, "postgres", "postgres")
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -k {directory} -c fsync=off -c full_page_writes=off"

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            logged = open(log, encoding="utf-8", errors="replace").read() if os.path.exists(log) else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{logged}")

    run(f"{bin_dir}/initdb", "-D", data, "-U", "postgres", f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync")
    run(f"{bin_dir}/pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
    server = PostgresServer("127.0.0.1", port, directory)
    import psycopg

    with psycopg.connect(server.admin_url(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{ROLE_PASSWORD}'")
        admin.execute(f"CREATE DATABASE etl OWNER {ROLE}")
    return server


def stop_server(server: PostgresServer) -> None:
    """Stop the server at once and remove its directory."""
    as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    subprocess.run(
        [*as_user, f"{_bin_dir()}/pg_ctl", "-D", os.path.join(server.directory, "data"), "-m", "immediate", "-w", "stop"],
        capture_output=True, timeout=60, check=False,
    )
    shutil.rmtree(server.directory, ignore_errors=True)


def create_database(server: PostgresServer, name: str) -> str:
    """Create an empty database owned by the test role; return its URL."""
    import psycopg

    with psycopg.connect(server.admin_url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" OWNER {ROLE}')
    return server.url(name)
