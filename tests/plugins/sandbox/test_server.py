"""Running the sandbox: from a thread, and from the command line."""

from __future__ import annotations

import signal
import sys

import httpx
import pytest

from etl_cxone.sandbox import run_sandbox_in_thread
from tests.plugins.sandbox.conftest import CID, served_from_the_command_line, settings


def test_run_sandbox_in_thread_from_sync_code():
    with run_sandbox_in_thread(settings(rate_limit=1000)) as sb:
        assert sb.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=sb.url, timeout=10) as c:
            r = c.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("sandbox-client", "sandbox-secret"),
            )
            token = r.json()["access_token"]
            r = c.patch(
                f"/api/v2/contacts/{CID}",
                json={"lastName": "Lovelace"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200
        assert sb.contact(CID) == {"contactId": CID, "lastName": "Lovelace"}
        assert sb.stats()["applied"] == 1
        sb.reset_stats()
        assert sb.stats()["applied"] == 0
        url = sb.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/sandbox/stats", timeout=2)


def test_run_sandbox_in_thread_reports_a_taken_port():
    with run_sandbox_in_thread(settings()) as sb:
        port = int(sb.url.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            with run_sandbox_in_thread(settings(port=port)):
                pass


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_serve_forever_prints_url_and_stops_quietly_on_ctrl_c():
    with served_from_the_command_line() as (proc, url, line):
        assert "sandbox-client" in line and "sandbox-secret" in line
        assert httpx.get(url + "/sandbox/stats", timeout=5).status_code == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "Traceback" not in err, err
