"""Property tests of the key-to-URL path builder: any value becomes exactly one path segment."""

import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl_core import RecordRejected
from etl_core.http import PathTemplate, render_path, template_fields

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


@pytest.mark.parametrize(
    "template",
    [
        "/api/v2/contacts/{contactId}/../../admin",
        "/api/./contacts/{contactId}",
        "/api/v2/contacts/{contactId}/..",
        "/api/%2e%2E/contacts/{contactId}",
        "/api/.%2e/contacts/{contactId}",
        "/api/..;x/contacts/{contactId}",
    ],
)
def test_templates_with_dot_segments_are_refused(template):
    with pytest.raises(ValueError, match="must not have a '.' or '..' segment"):
        template_fields(template)


@pytest.mark.parametrize("template", ["/.well-known/{x}", "/api/v1.2/{x}", "/a/.../{x}", "/a/{x}.json", "/a/..x/{x}"])
def test_dots_inside_segments_are_fine(template):
    assert template_fields(template) == ("x",)


@pytest.mark.parametrize(
    ("template", "data"),
    [("/a/{x}{y}/b", {"x": ".", "y": "."}), ("/a/.{x}/b", {"x": "."}), ("/a/{x}%2e/b", {"x": "."})],
)
def test_values_that_make_a_dot_segment_with_their_neighbours_are_rejected(template, data):
    with pytest.raises(RecordRejected, match="^x: not a valid path segment$"):
        render_path(template, data, key_field="x", key_format="any")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([".", "..", "a", "%2e", ";"]), min_size=1, max_size=4))
def test_a_rendered_path_never_holds_a_dot_segment(values):
    template = "/a/" + "".join(f"{{v{i}}}" for i in range(len(values))) + "/b"
    data = {f"v{i}": value for i, value in enumerate(values)}
    try:
        path = render_path(template, data, key_field="v0", key_format="any")
    except RecordRejected:
        return
    assert urllib.parse.unquote(path.split("/")[2].partition(";")[0]) not in (".", "..")


def test_a_template_compiled_once_fills_every_record_on_its_own():
    template = PathTemplate("/v1/{group}/x{tag}.json/{id}", key_field="id", key_format="integer")
    assert template.fields == ("group", "tag", "id")
    assert template.render({"group": "a b", "tag": "/", "id": 7}) == "/v1/a%20b/x%2F.json/7"
    assert template.render({"group": "..;", "tag": "~", "id": "12"}) == "/v1/..%3B/x~.json/12"
    with pytest.raises(RecordRejected, match="^tag: missing$"):
        template.render({"group": "g", "tag": "", "id": 1})
    with pytest.raises(RecordRejected, match="^id: not a valid integer$"):
        template.render({"group": "g", "tag": "t", "id": "1/2"})
    assert template.render({"group": "g", "tag": "t", "id": 3}) == "/v1/g/xt.json/3"
    with pytest.raises(ValueError, match="'.' or '..' segment"):
        PathTemplate("/a/../{id}", key_field="id", key_format="any")
