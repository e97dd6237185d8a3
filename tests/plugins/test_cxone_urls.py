"""Property tests of the key-to-URL path builder: any value becomes exactly one path segment."""

import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl_core import RecordRejected
from etl_cxone._urls import render_path, template_fields

TEMPLATE = "/api/v2/contacts/{contactId}"
PREFIX = "/api/v2/contacts/"


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=60), st.integers(), st.none(), st.booleans(), st.floats()))
def test_any_value_is_one_segment_or_rejected(value):
    try:
        path = render_path(TEMPLATE, {"contactId": value}, key_field="contactId", key_format="any")
    except RecordRejected as exc:
        assert exc.reason.startswith("contactId: ")
        return
    assert path.startswith(PREFIX)
    segment = path[len(PREFIX):]
    assert segment and not set(segment) & set("/?#\r\n \\")
    assert segment.isascii()
    assert urllib.parse.unquote(segment) == str(value)
    assert segment not in (".", "..", "%2e", "%2E%2E")


@pytest.mark.parametrize(
    "hostile",
    ["../admin", "a/b?x=1", "%2e%2e/", "#frag", "x y", "ünï", "a\r\nHost: evil", "..%2f", "?", "%00"],
)
def test_hostile_keys_stay_in_their_segment(hostile):
    path = render_path(TEMPLATE, {"contactId": hostile}, key_field="contactId", key_format="any")
    assert path.count("/") == TEMPLATE.count("/")
    assert urllib.parse.unquote(path[len(PREFIX):]) == hostile


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_uuid_format_rejects_everything_but_uuids(value):
    try:
        render_path(TEMPLATE, {"contactId": value}, key_field="contactId", key_format="uuid")
    except RecordRejected:
        return
    import uuid

    uuid.UUID(value)  # only real UUIDs get through


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_templates_are_validated_not_crashed(template):
    try:
        fields = template_fields(template)
    except ValueError:
        return
    assert template.startswith("/")
    assert all(name.isidentifier() or name.replace("_", "a").isalnum() for name in fields)
