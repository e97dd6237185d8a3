"""Tests of reading a JWT's claims (``etl_core.http._claims``)."""

from __future__ import annotations

import base64
import json

import pytest

from etl_core.http import token_claims


def segment(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_the_payload_of_a_jwt_is_read_without_a_key():
    token = f"{segment({'alg': 'RS256'})}.{segment({'tenantId': 't-1', 'area': 'na1'})}.not-checked"
    assert token_claims(token) == {"tenantId": "t-1", "area": "na1"}


@pytest.mark.parametrize(
    "token",
    ["opaque-token", "a.b", "a.b.c.d", f"x.{segment([1, 2])}.y", "x.!!!.y", f"x.{segment('text')[:-2]}.y", "x..y"],
)
def test_anything_else_has_no_claims(token):
    assert token_claims(token) == {}
