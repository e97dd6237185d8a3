"""The http sink's JSON templates, status policy, result mapping and option checks."""

from __future__ import annotations

import json

import pydantic
import pytest

from etl_http import HttpOptions
from etl_http._results import ResultMapper, resolve_pointer
from etl_http._status import StatusPolicy, parse_status_key
from etl_http._templates import OMIT, Template, TemplateError

# ----------------------------------------------------------------- templates


def test_a_whole_string_placeholder_keeps_the_value_type_and_text_is_interpolated():
    template = Template({"id": "{id}", "age": "{age}", "greeting": "Dear {first} {last}", "kind": "person", "n": 3})
    assert template.fields == ("id", "age", "first", "last")
    rendered = template.render({"id": "A1", "age": 42, "first": "Ada", "last": "Lovelace"})
    assert rendered == {"id": "A1", "age": 42, "greeting": "Dear Ada Lovelace", "kind": "person", "n": 3}


def test_empty_or_missing_fields_are_left_out_of_objects_and_lists():
    template = Template({"a": "{a}", "b": "x-{b}", "list": ["{a}", "{c}", "fixed"], "nested": {"c": "{c}"}})
    assert template.render({"a": "", "c": None}) == {"list": ["fixed"], "nested": {}}
    assert Template("{a}").render({}) is OMIT


def test_doubled_braces_are_literal_and_values_are_never_parsed_as_templates():
    template = Template({"text": "{{not a field}} {name}"})
    assert template.fields == ("name",)
    assert template.render({"name": "{secret}"}) == {"text": "{not a field} {secret}"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": "x { y"}, "a: lone '{'"),
        ({"a": ["ok", "}"]}, r"a\[1\]: lone '}'"),
        ({"a": "{first name}"}, "a: lone '{'"),
        ("{0bad}", "the template: lone '{'"),
    ],
)
def test_malformed_templates_are_refused_with_where(value, message):
    with pytest.raises(TemplateError, match=message):
        Template(value)


# ----------------------------------------------------------------- status policy


@pytest.mark.parametrize(("key", "span"), [("404", (404, 404)), ("4xx", (400, 499)), ("500-504", (500, 504)), (" 2XX ", (200, 299))])
def test_status_keys(key, span):
    assert parse_status_key(key) == span


@pytest.mark.parametrize("key", ["600", "4x", "abc", "504-500", "40", "1xx1"])
def test_bad_status_keys(key):
    with pytest.raises(ValueError):
        parse_status_key(key)


def test_default_policy_matches_the_cxone_sink():
    policy = StatusPolicy({})
    expected = {200: "ok", 204: "ok", 302: "reject", 400: "reject", 401: "stop", 403: "reject", 404: "missing",
                409: "reject", 429: "throttle", 500: "retry", 503: "throttle", 504: "retry", 101: "reject"}
    assert {status: policy.action(status) for status in expected} == expected


def test_the_narrowest_rule_wins_and_a_config_rule_beats_a_default_of_the_same_width():
    policy = StatusPolicy({"4xx": "retry", "409": "ok", "500-502": "stop", "404": "reject"})
    assert policy.action(409) == "ok"
    assert policy.action(404) == "reject"  # config beats the default 404: missing
    assert policy.action(429) == "throttle"  # the default 429 is narrower than the config's 4xx
    assert policy.action(418) == "retry"
    assert policy.action(501) == "stop"
    assert policy.action(503) == "throttle"


# ----------------------------------------------------------------- result mapping


def test_pointer_resolution():
    document = {"a": {"b/c": [10, {"~d": 2}]}}
    assert resolve_pointer(document, "/a/b~1c/1/~0d") == 2
    assert resolve_pointer(document, "/a/missing") is None
    assert resolve_pointer(document, "/a/b~1c/5") is None
    assert resolve_pointer(document, "") == document


def test_results_matched_by_index():
    mapper = ResultMapper(pointer="/entryResults", match="index", success="success", error="error")
    answer = {"entryResults": [{"success": True, "error": None}, {"success": False, "error": "invalid email address"}]}
    first, second, third = mapper.results(answer, [None, None, None])
    assert first.ok and not second.ok and second.error == "invalid email address"
    assert json.loads(second.detail) == answer["entryResults"][1]
    assert third == "the answer has no result for this record"


def test_results_matched_by_key_in_any_order_and_twice_sent_keys_take_results_in_turn():
    mapper = ResultMapper(pointer="/r", match="externalId", success="/status/ok", error="/status/why")
    answer = {"r": [
        {"externalId": "B", "status": {"ok": False, "why": "bad phone"}},
        {"externalId": "A", "status": {"ok": True}},
        {"externalId": "B", "status": {"ok": True}},
    ]}
    a, b1, b2, c = mapper.results(answer, ["A", "B", "B", "C"])
    assert a.ok and not b1.ok and b1.error == "bad phone" and b2.ok
    assert c == "the answer has no result for this record"


def test_without_a_success_field_an_item_without_an_error_succeeded():
    mapper = ResultMapper(pointer="", match="index", success=None, error="error")
    ok, refused = mapper.results([{"id": 1}, {"error": {"code": 7}}], [None, None])
    assert ok.ok and not refused.ok and refused.error == '{"code": 7}'


def test_an_answer_without_the_results_array_gives_every_item_a_reason():
    mapper = ResultMapper(pointer="/entryResults", match="index", success="success", error="error")
    assert mapper.results({"message": "accepted"}, [None, None]) == ["the answer has no results array at /entryResults"] * 2
    assert mapper.results(None, [None]) == ["the answer has no results array at /entryResults"]


# ----------------------------------------------------------------- options


def _options(**sink):
    return HttpOptions.model_validate({"base_url": "https://api.example.com", **sink})


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ({"status": {"4x": "reject"}}, "is not a status"),
        ({"status": {"404": "ignore"}}, "404"),
        ({"path": "/a/../b"}, r"'\.' or '\.\.' segment"),
        ({"body": {"a": "{"}}, "lone"),
        ({"headers": {"Authorization": "Bearer x"}}, "set by the sink"),
        ({"headers": {"X-A": "1\r\nX-B: 2"}}, "line break"),
        ({"batch": {"size": 10, "body": {"entries": "{item}"}}}, "must hold"),
        ({"batch": {"size": 10, "body": {"a": "{items}", "b": "{items}"}}}, "exactly once"),
        ({"batch": {"size": 10, "body": {"e": "{items}"}}, "path": "/books/{bookId}"}, r"cannot use \{bookId\}"),
        ({"batch": {"size": 10, "body": {"e": "{items}"}, "results": {"pointer": "entryResults"}}}, "not a JSON pointer"),
    ],
)
def test_option_checks(sink, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        _options(**sink)
