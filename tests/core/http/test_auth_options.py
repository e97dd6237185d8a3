"""Tests of the ``auth:`` mapping in a config file (``etl_core.http._auth_options``): errors name the key and line."""

from __future__ import annotations

import pytest

from etl_core import ConfigError
from etl_core.config import load_config
from etl_core.http import ClientCredentialsAuth, PasswordAuth

HEAD = """\
pipeline: demo
source:
  type: csv
  path: in.csv
sink:
  type: cxone
  base_url: https://api-na1.example.com
"""
PASSWORD = """\
  auth:
    type: password
    issuer: https://cxone.example.com
    client_id: app
    client_secret: app-secret
    username: key-id
    password: key-secret
"""


def load(write_config, registry, sink: str):
    return load_config(str(write_config(HEAD + sink)), registry)


def error_of(write_config, registry, sink: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(write_config, registry, sink)
    return caught.value


def test_a_password_grant_is_read(write_config, registry):
    options = load(write_config, registry, PASSWORD).sink[1]
    assert isinstance(options.auth, PasswordAuth) and options.auth.client_auth == "basic"
    assert options.auth.password.get_secret_value() == "key-secret"


def test_the_flat_client_credentials_keys_still_work(write_config, registry):
    flat = "  token_url: https://auth.example.com/token\n  client_id: app\n  client_secret: s\n  auth_method: form\n"
    options = load(write_config, registry, flat).sink[1]
    assert options.auth is None and options.token_url == "https://auth.example.com/token" and options.auth_method == "form"
    explicit = "  auth: {type: client_credentials, token_url: https://auth.example.com/token, client_id: app, client_secret: s}\n"
    assert isinstance(load(write_config, registry, explicit).sink[1].auth, ClientCredentialsAuth)


@pytest.mark.parametrize(
    ("sink", "path", "line", "message"),
    [
        (PASSWORD.replace("    username: key-id\n", ""), "sink.auth.username", 8, "required key is missing"),
        (PASSWORD.replace("password: key-secret", "pasword: key-secret"), "sink.auth.pasword", 14, "did you mean 'password'?"),
        (PASSWORD.replace("type: password", "type: passwrd"), "sink.auth.type", 9, "must be one of 'client_credentials', 'password'"),
        (PASSWORD.replace("client_auth", "x").replace("    issuer: https://cxone.example.com\n", ""), "sink.auth", 8, "give token_url or issuer"),
        (PASSWORD.replace("issuer: https://cxone.example.com", "issuer: cxone.example.com"), "sink.auth.issuer", 10, "http:// or https://"),
        (PASSWORD + "  client_id: app\n", "sink.auth", 8, "give auth or client_id, not both"),
        (PASSWORD + "  scope: contact:write\n", "sink", 5, "scope only apply without auth"),
        ("  token_url: https://auth.example.com/token\n", "sink.auth", 5, "no credentials: give auth"),
        ("  auth: {type: api_key, header: 'X Key', value: k}\n", "sink.auth.header", 8, "must be a header name"),
    ],
)
def test_errors_name_the_key_and_its_line(write_config, registry, sink, path, line, message):
    error = error_of(write_config, registry, sink)
    assert (error.path, error.line) == (path, line)
    assert message in error.message


def test_a_secret_is_never_quoted_in_an_error(write_config, registry):
    error = error_of(write_config, registry, "  auth: {type: bearer, token: 'secret token value'}\n")
    assert error.path == "sink.auth.token" and "secret token value" not in str(error)
