"""Every auth provider end to end: the real `etl run` in a subprocess against the sandbox.

Each run updates seeded contacts through the cxone sink with credentials chosen by
``auth:``; the sandbox's statistics show which grants were used and what was applied.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl_core.http import token_claims
from tests.conftest import pipeline_config, run_etl
from tests.e2e.conftest import CONTACT_FIELDS, contact_row, expected_fields, json_logs, write_rows

ACCESS_KEY_ID = "e2e-key-" + secrets.token_hex(4)
#: Like a real access key secret, it holds characters that form encoding must escape.
ACCESS_KEY_SECRET = "e2e+key/secret=" + secrets.token_hex(12) + "=="
CLIENT_SECRET = "e2e-client-secret-" + secrets.token_hex(12)
ENV = {"AK_ID": ACCESS_KEY_ID, "AK_SECRET": ACCESS_KEY_SECRET, "APP_SECRET": CLIENT_SECRET}

PASSWORD = {
    "type": "password",
    "client_id": "e2e-app",
    "client_secret": "${APP_SECRET}",
    "username": "${AK_ID}",
    "password": "${AK_SECRET}",
}


class TokenLog:
    """Every token the sandbox's access-key endpoints issue (read from their answers)."""

    def __init__(self, sandbox: Any) -> None:
        self.tokens: list[str] = []
        handler = sandbox._access_key_token

        def recording(request: Any) -> Any:
            response = handler(request)
            if response.status == 200:
                body = json.loads(response.body)
                self.tokens += [body[name] for name in ("access_token", "refresh_token", "id_token") if name in body]
            return response

        sandbox._access_key_token = recording


def start(start_sandbox, **settings: Any) -> Any:
    settings = {"client_id": "e2e-app", "client_secret": CLIENT_SECRET, "access_key_id": ACCESS_KEY_ID,
                "access_key_secret": ACCESS_KEY_SECRET} | settings
    return start_sandbox(**settings)


def run(tmp_path: Path, sandbox: Any, auth: dict[str, str], *, rows: int = 12, base_url: str | None = None,
        workers: int = 4, extra_env: dict[str, str] | None = None):
    """Run `etl run` updating contacts 0..rows-1 with ``auth``; return (process, rows, output dir)."""
    tmp_path.mkdir(exist_ok=True)
    data = [contact_row(i) for i in range(rows)]
    csv_path = write_rows(tmp_path / "contacts.csv", data)
    out = tmp_path / "out"
    sink = {
        "base_url": base_url or sandbox.url,
        "auth": "{" + ", ".join(f"{key}: {json.dumps(value)}" for key, value in auth.items()) + "}",
        "path_template": "/api/v2/contacts/{contactId}",
    }
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        pipeline_config(name="auth-e2e", csv=csv_path, out=out, fields=CONTACT_FIELDS, sink_options=sink, workers=workers),
        encoding="utf-8",
    )
    done = run_etl("run", str(config), "--log-format", "json", cwd=tmp_path, env=ENV | (extra_env or {}))
    return done, data, out


def assert_every_row_applied_once(sandbox: Any, rows: list[dict[str, str]]) -> None:
    stats = sandbox.stats()
    assert stats["applied"] == len(rows)
    assert set(stats["updates"].values()) == {1}
    for row in rows:
        cid = row["contact_id"]
        assert sandbox.contact(cid) == expected_fields(row)


def assert_no_secret_in(done: Any, out: Path, needles: list[str]) -> None:
    outputs = {"stdout": done.stdout, "stderr": done.stderr}
    for path in out.rglob("*"):
        if path.is_file():
            outputs[path.name] = path.read_bytes().decode("utf-8", "replace")
    leaks = [(n, where) for n, needle in enumerate(needles) for where, text in outputs.items() if needle in text]
    assert not leaks, leaks


def test_password_grant_with_discovery_of_the_token_endpoint_and_the_api_host(tmp_path, start_sandbox):
    sandbox = start(start_sandbox)
    issued = TokenLog(sandbox)
    done, rows, out = run(tmp_path, sandbox, PASSWORD | {"issuer": sandbox.url}, base_url="discover")
    assert done.returncode == 0, done.stderr
    assert_every_row_applied_once(sandbox, rows)
    stats = sandbox.stats()
    assert stats["grants"] == {"password": 1}
    tenant = sandbox.settings.tenant_id
    assert {"/.well-known/openid-configuration", f"/.well-known/cxone-configuration?tenantId={tenant}"} <= set(stats["paths"])
    [found] = [line for line in json_logs(done.stdout) if line["event"] == "api_endpoint_discovered"]
    assert (found["api_endpoint"], found["tenant_id"], found["area"]) == (sandbox.url, tenant, "na1")
    assert token_claims(issued.tokens[0])["tenantId"] == tenant
    assert_no_secret_in(done, out, [ACCESS_KEY_SECRET, CLIENT_SECRET, *issued.tokens])


@pytest.mark.parametrize("client_auth", ["basic", "post"])
def test_password_grant_with_each_client_authentication(tmp_path, start_sandbox, client_auth):
    sandbox = start(start_sandbox)
    auth = PASSWORD | {"token_url": sandbox.url + "/auth/token", "client_auth": client_auth}
    done, rows, _ = run(tmp_path, sandbox, auth)
    assert done.returncode == 0, done.stderr
    assert_every_row_applied_once(sandbox, rows)
    assert sandbox.stats()["grants"] == {"password": 1}


def test_tokens_are_renewed_with_their_refresh_token(tmp_path, start_sandbox):
    # Each token is good for 3 API requests: 12 rows need 3 renewals at least.
    sandbox = start(start_sandbox, token_max_uses=3)
    issued = TokenLog(sandbox)
    done, rows, out = run(tmp_path, sandbox, PASSWORD | {"issuer": sandbox.url}, workers=1)
    assert done.returncode == 0, done.stderr
    assert_every_row_applied_once(sandbox, rows)
    stats = sandbox.stats()
    assert stats["grants"]["password"] == 1 and stats["grants"]["refresh_token"] >= 3
    assert stats["by_status"]["401"] == stats["grants"]["refresh_token"]
    assert_no_secret_in(done, out, [ACCESS_KEY_SECRET, CLIENT_SECRET, *issued.tokens])


def test_one_401_gets_one_refresh_and_the_row_still_lands(tmp_path, start_sandbox):
    sandbox = start(start_sandbox, token_max_uses=5)
    done, rows, _ = run(tmp_path, sandbox, PASSWORD | {"issuer": sandbox.url}, rows=6, workers=1)
    assert done.returncode == 0, done.stderr
    assert_every_row_applied_once(sandbox, rows)  # the sixth row too, sent again after its 401
    stats = sandbox.stats()
    assert stats["by_status"] == {"200": 6, "401": 1}
    assert stats["grants"] == {"password": 1, "refresh_token": 1}


def test_the_legacy_access_key_endpoint_and_its_refresh(tmp_path, start_sandbox):
    sandbox = start(start_sandbox, token_max_uses=4)
    issued = TokenLog(sandbox)
    auth = {
        "type": "cxone_access_key",
        "token_url": sandbox.url + "/authentication/v1/token/access-key",
        "access_key_id": "${AK_ID}",
        "access_key_secret": "${AK_SECRET}",
    }
    done, rows, out = run(tmp_path, sandbox, auth, workers=1)
    assert done.returncode == 0, done.stderr
    assert_every_row_applied_once(sandbox, rows)
    grants = sandbox.stats()["grants"]
    assert grants["access_key"] == 1 and grants["access_key_refresh"] >= 2
    assert_no_secret_in(done, out, [ACCESS_KEY_SECRET, *issued.tokens])


def test_a_fixed_bearer_token_and_an_api_key_header(tmp_path, start_sandbox):
    sandbox = start(start_sandbox)
    form = {"grant_type": "password", "username": ACCESS_KEY_ID, "password": ACCESS_KEY_SECRET}
    token = httpx.post(sandbox.url + "/auth/token", data=form, auth=("e2e-app", CLIENT_SECRET)).json()["access_token"]
    done, rows, out = run(tmp_path / "bearer", sandbox, {"type": "bearer", "token": "${API_TOKEN}"}, rows=4,
                          extra_env={"API_TOKEN": token})
    assert done.returncode == 0, done.stderr
    header = {"type": "api_key", "header": "Authorization", "value": "Bearer ${API_TOKEN}"}
    again, _, out_again = run(tmp_path / "api_key", sandbox, header, rows=4, extra_env={"API_TOKEN": token})
    assert again.returncode == 0, again.stderr
    assert sandbox.stats()["applied"] == 8
    assert_no_secret_in(done, out, [token])
    assert_no_secret_in(again, out_again, [token])


@pytest.mark.parametrize(
    "auth",
    [
        {**PASSWORD, "password": "not-the-key-secret"},
        {**PASSWORD, "client_secret": "not-the-client-secret", "client_auth": "post"},
        {"type": "cxone_access_key", "access_key_id": "${AK_ID}", "access_key_secret": "not-the-key-secret"},
        {"type": "client_credentials", "client_id": "e2e-app", "client_secret": "not-the-client-secret"},
    ],
    ids=["password-wrong-key", "password-wrong-client", "cxone_access_key", "client_credentials"],
)
def test_bad_credentials_stop_the_run_before_any_row_is_sent(tmp_path, start_sandbox, auth):
    sandbox = start(start_sandbox)
    where = {
        "password": {"issuer": sandbox.url},
        "cxone_access_key": {"token_url": sandbox.url + "/authentication/v1/token/access-key"},
        "client_credentials": {"token_url": sandbox.url + "/oauth/token"},
    }[auth["type"]]
    done, _, out = run(tmp_path, sandbox, auth | where)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    stats = sandbox.stats()
    assert stats["requests"] == 0 and stats["applied"] == 0  # no API request at all
    assert stats["token_requests"] == 1 and stats["tokens_issued"] == 0
    [aborted] = [line for line in json_logs(done.stdout) if line["event"] == "run_aborted"]
    assert "was refused" in aborted["reason"]
    assert_no_secret_in(done, out, ["not-the-key-secret", "not-the-client-secret", ACCESS_KEY_SECRET, CLIENT_SECRET])
