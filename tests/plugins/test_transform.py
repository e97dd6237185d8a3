"""Tests of the first-party ``map`` and ``validate`` transforms."""

from __future__ import annotations

from typing import Any

import pluggy
import pydantic
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import etl_transform
from etl_core import RecordRejected, hookspecs
from etl_core.registry import Registry
from etl_transform import MapOptions, MapTransform, ValidateOptions, ValidateTransform

UUID = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"


def make_map(**options: Any) -> MapTransform:
    return MapTransform(MapOptions.model_validate(options))


def make_validate(fields: dict[str, Any], **options: Any) -> ValidateTransform:
    return ValidateTransform(ValidateOptions.model_validate({"fields": fields, **options}))


def rejection(transform: MapTransform | ValidateTransform, data: dict[str, Any]) -> str:
    with pytest.raises(RecordRejected) as info:
        transform.apply(data)
    return info.value.reason


# --- registration ---------------------------------------------------------------------------


def test_registers_both_transforms_by_name() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(etl_transform, name="etl_transform")
    registry = Registry(pm)
    assert registry.names("transform") == ["map", "validate"]
    assert registry.get("transform", "map") is MapTransform
    assert registry.get("transform", "validate") is ValidateTransform


# --- map ------------------------------------------------------------------------------------

MAP_EXAMPLE = """
fields:
  contactId: contact_id
  email: {from: email, normalize: [strip, lower]}
  firstName: {from: first_name, normalize: [strip, title]}
  origin: {value: csv-import}
  phone: {from: phone, normalize: [strip], default: null}
keep_unmapped: false
drop_empty: true
normalize: [strip]
"""


def test_map_documented_example() -> None:
    transform = MapTransform(MapOptions.model_validate(yaml.safe_load(MAP_EXAMPLE)))
    row = {"contact_id": UUID, "email": " Jane.Doe@Example.COM ", "first_name": " jane ", "phone": "", "notes": "x"}
    out = transform.apply(row)
    assert out == {"contactId": UUID, "email": "jane.doe@example.com", "firstName": "Jane", "origin": "csv-import"}
    assert list(out) == ["contactId", "email", "firstName", "origin"]


def test_map_output_follows_field_order_not_input_order() -> None:
    transform = make_map(fields={"b": "y", "a": "x"})
    assert list(transform.apply({"x": 1, "y": 2})) == ["b", "a"]


def test_map_does_not_change_its_input() -> None:
    row = {"email": " A@B.CO "}
    make_map(fields={"email": {"from": "email", "normalize": ["strip", "lower"]}}).apply(row)
    assert row == {"email": " A@B.CO "}


@pytest.mark.parametrize(
    ("normalizer", "value", "expected"),
    [
        ("strip", " \t a b \n", "a b"),
        ("lower", "ÄbC", "äbc"),
        ("upper", "äbc", "ÄBC"),
        ("title", "jean-luc PICARD", "Jean-Luc Picard"),
        ("collapse_whitespace", "  a \t b\n\n c ", "a b c"),
        ("digits_only", "+1 (555) 010-9999", "15550109999"),
        ("none_if_empty", "", None),
        ("none_if_empty", " ", " "),
    ],
)
def test_map_normalizer(normalizer: str, value: str, expected: str | None) -> None:
    transform = make_map(fields={"f": {"from": "f", "normalize": [normalizer]}})
    assert transform.apply({"f": value}) == {"f": expected}


def test_map_normalizers_apply_in_order() -> None:
    stripped_then_emptied = make_map(fields={"f": {"from": "f", "normalize": ["strip", "none_if_empty"]}})
    emptied_then_stripped = make_map(fields={"f": {"from": "f", "normalize": ["none_if_empty", "strip"]}})
    assert stripped_then_emptied.apply({"f": "  "}) == {"f": None}
    assert emptied_then_stripped.apply({"f": "  "}) == {"f": ""}


def test_map_global_normalize_runs_before_field_normalize() -> None:
    transform = make_map(normalize=["strip"], fields={"f": {"from": "f", "normalize": ["none_if_empty"]}, "g": "g"})
    assert transform.apply({"f": "   ", "g": " x "}) == {"f": None, "g": "x"}


def test_map_normalizers_leave_non_strings_alone() -> None:
    transform = make_map(
        fields={"n": {"from": "n", "normalize": ["strip", "upper"]}, "m": {"from": "m", "normalize": ["lower"]}},
    )
    assert transform.apply({"n": 5, "m": None}) == {"n": 5, "m": None}


def test_map_none_if_empty_stops_the_chain() -> None:
    transform = make_map(fields={"f": {"from": "f", "normalize": ["none_if_empty", "upper", "digits_only"]}})
    assert transform.apply({"f": ""}) == {"f": None}
    assert transform.apply({"f": "a1"}) == {"f": "1"}


def test_map_missing_column_rejects_naming_the_column() -> None:
    transform = make_map(fields={"firstName": {"from": "first_name"}})
    assert rejection(transform, {"email": "a@b.co"}) == "first_name: column missing from input"


def test_map_reports_every_missing_column() -> None:
    transform = make_map(fields={"a": "col_a", "b": "col_b", "c": "col_c"})
    assert rejection(transform, {"col_b": "x"}) == "col_a: column missing from input; col_c: column missing from input"


def test_map_default_fills_a_missing_column() -> None:
    transform = make_map(
        fields={
            "phone": {"from": "phone", "normalize": ["strip"], "default": None},
            "country": {"from": "country", "normalize": ["upper"], "default": " de "},
        }
    )
    assert transform.apply({}) == {"phone": None, "country": " de "}  # a default is used as is
    assert transform.apply({"phone": " 1 ", "country": "fr"}) == {"phone": "1", "country": "FR"}


def test_map_default_does_not_replace_an_empty_value() -> None:
    transform = make_map(fields={"phone": {"from": "phone", "default": "n/a"}})
    assert transform.apply({"phone": ""}) == {"phone": ""}


@pytest.mark.parametrize("constant", ["csv-import", 0, 1.5, False, None])
def test_map_constant(constant: Any) -> None:
    transform = make_map(fields={"id": "id", "origin": {"value": constant}})
    assert transform.apply({"id": "7"}) == {"id": "7", "origin": constant}


def test_map_keep_unmapped_false_selects_only_mapped_fields() -> None:
    transform = make_map(fields={"contactId": "contact_id"})
    assert transform.apply({"contact_id": UUID, "notes": "n", "city": "c"}) == {"contactId": UUID}


def test_map_keep_unmapped_true_passes_other_fields_through_unchanged() -> None:
    transform = make_map(
        keep_unmapped=True,
        normalize=["strip"],
        fields={"contactId": "contact_id", "email": {"from": "mail", "normalize": ["lower"]}},
    )
    out = transform.apply({"notes": " n ", "contact_id": UUID, "mail": " A@B.CO ", "email": "old", "city": ""})
    # The source columns and the overwritten "email" input are not passed through.
    assert out == {"contactId": UUID, "email": "a@b.co", "notes": " n ", "city": ""}
    assert list(out) == ["contactId", "email", "notes", "city"]


@pytest.mark.parametrize("keep_unmapped", [False, True])
def test_map_drop_empty_true_drops_none_and_empty_strings(keep_unmapped: bool) -> None:
    transform = make_map(
        drop_empty=True,
        keep_unmapped=keep_unmapped,
        fields={
            "a": {"from": "a", "normalize": ["strip"]},
            "b": "b",
            "c": "c",
            "d": {"from": "d", "default": None},
            "e": {"value": ""},
            "f": {"value": 0},
        },
    )
    out = transform.apply({"a": "   ", "b": None, "c": "kept", "other": "", "zero": 0})
    expected = {"c": "kept", "f": 0, "zero": 0} if keep_unmapped else {"c": "kept", "f": 0}
    assert out == expected


def test_map_drop_empty_false_keeps_empty_values() -> None:
    transform = make_map(keep_unmapped=True, fields={"a": {"from": "a", "normalize": ["strip"]}, "b": "b"})
    assert transform.apply({"a": "  ", "b": None, "other": ""}) == {"a": "", "b": None, "other": ""}


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"fields": {"a": "a"}, "keep_unmaped": True}, id="unknown-option"),
        pytest.param({"fields": {"a": {"from": "a", "normalise": ["strip"]}}}, id="unknown-spec-key"),
        pytest.param({"fields": {"a": {"from": "a", "normalize": ["trim"]}}}, id="unknown-normalizer"),
        pytest.param({"fields": {"a": "a"}, "normalize": ["capitalize"]}, id="unknown-global-normalizer"),
        pytest.param({"fields": {"a": {"from": "a", "value": "x"}}}, id="from-and-value"),
        pytest.param({"fields": {"a": {"normalize": ["strip"]}}}, id="neither-from-nor-value"),
        pytest.param({"fields": {"a": {"value": "x", "default": "y"}}}, id="default-with-value"),
        pytest.param({"fields": {"a": {"value": "x", "normalize": ["strip"]}}}, id="normalize-with-value"),
        pytest.param({"fields": {"a": {"value": ["x"]}}}, id="non-scalar-constant"),
        pytest.param({"fields": {"a": ""}}, id="empty-column-name"),
        pytest.param({"fields": {"a": 3}}, id="spec-not-a-mapping"),
        pytest.param({}, id="no-fields"),
    ],
)
def test_map_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        MapOptions.model_validate(options)


def test_map_from_and_value_error_says_why() -> None:
    with pytest.raises(pydantic.ValidationError, match="exactly one of `from`"):
        MapOptions.model_validate({"fields": {"a": {"from": "a", "value": "x"}}})


# --- validate -------------------------------------------------------------------------------

VALIDATE_EXAMPLE = """
fields:
  contactId: [required, uuid]
  email: [required, email]
  phone: [e164]
  firstName: [{max_length: 50}]
  status: [{enum: [active, inactive]}]
  code: [{regex: "^[A-Z]{3}$"}]
  age: [integer, {min_length: 1}]
"""


def example_validator() -> ValidateTransform:
    return ValidateTransform(ValidateOptions.model_validate(yaml.safe_load(VALIDATE_EXAMPLE)))


def test_validate_documented_example_passes_a_good_record_unchanged() -> None:
    row = {
        "contactId": UUID,
        "email": "jane@example.com",
        "phone": "+4915112345678",
        "firstName": "Jane",
        "status": "active",
        "code": "ABC",
        "age": "42",
    }
    assert example_validator().apply(row) == dict(row)


def test_validate_optional_fields_may_be_absent() -> None:
    assert example_validator().apply({"contactId": UUID, "email": "jane@example.com"}) == {
        "contactId": UUID,
        "email": "jane@example.com",
    }


def test_validate_reports_every_failure_in_config_order() -> None:
    row = {
        "email": "not-an-email",
        "phone": "0151",
        "firstName": "x" * 51,
        "status": "gone",
        "code": "abc",
        "age": "4.5",
    }
    assert rejection(example_validator(), row) == (
        "contactId: missing or empty (rule: required); "
        "email: not a valid email address (rule: email); "
        "phone: not an E.164 phone number (rule: e164); "
        "firstName: longer than 50 characters (rule: max_length); "
        "status: not one of active, inactive (rule: enum); "
        "code: does not match ^[A-Z]{3}$ (rule: regex); "
        "age: not an integer (rule: integer)"
    )


def test_validate_reports_every_failing_rule_of_one_field() -> None:
    transform = make_validate({"code": ["integer", {"max_length": 2}, {"regex": "[0-9]+"}]})
    assert rejection(transform, {"code": "abc"}) == (
        "code: not an integer (rule: integer); "
        "code: longer than 2 characters (rule: max_length); "
        "code: does not match [0-9]+ (rule: regex)"
    )


@pytest.mark.parametrize("row", [{}, {"f": None}, {"f": ""}], ids=["absent", "null", "empty"])
def test_validate_required_fails_when_absent_or_empty(row: dict[str, Any]) -> None:
    assert rejection(make_validate({"f": ["required"]}), row) == "f: missing or empty (rule: required)"


@pytest.mark.parametrize("value", ["x", " ", 0, False])
def test_validate_required_passes_any_other_value(value: Any) -> None:
    assert make_validate({"f": ["required"]}).apply({"f": value}) == {"f": value}


@pytest.mark.parametrize(
    "rule",
    ["email", "uuid", "e164", "integer", {"max_length": 0}, {"min_length": 5}, {"enum": ["a"]}, {"regex": "x"}],
    ids=str,
)
@pytest.mark.parametrize("row", [{}, {"f": None}, {"f": ""}], ids=["absent", "null", "empty"])
def test_validate_absent_or_empty_passes_every_rule_but_required(rule: Any, row: dict[str, Any]) -> None:
    assert make_validate({"f": [rule]}).apply(row) == row


VALID_EMAILS = [
    "a@b.co",
    "jane.doe@example.com",
    "first.last+tag@mail.sub.example.org",
    "o'brien@example.ie",
    "x_y-z!#$%&*/=?^`{|}~@example.com",
    "USER@EXAMPLE.COM",
    "a@xn--80ak6aa92e.com",
    "a@example.xn--p1ai",
    "a@1-2-3.example.io",
    "l" * 64 + "@example.com",
    "a@" + ("d" * 63 + ".") * 3 + "d" * 56 + ".com",  # 254 characters
]

INVALID_EMAILS = [
    "plain",
    "@example.com",
    "a@",
    "a@b",
    "a@@b.com",
    "a@b@c.com",
    "a b@c.com",
    "a@b .com",
    " a@b.com",
    "a@b.com\n",
    ".a@b.com",
    "a.@b.com",
    "a..b@c.com",
    "a@.b.com",
    "a@b..com",
    "a@-b.com",
    "a@b-.com",
    "a@b.c",
    "a@b.c0m",
    "a@b.com.",
    "a@b_c.com",
    "a@[127.0.0.1]",
    '"a b"@c.com',
    "ü@example.com",
    "a@exämple.com",
    "l" * 65 + "@example.com",
    "a@" + "d" * 64 + ".com",
    "a@" + ("d" * 63 + ".") * 3 + "d" * 57 + ".com",  # 255 characters
]


@pytest.mark.parametrize("email", VALID_EMAILS)
def test_validate_email_passes(email: str) -> None:
    assert make_validate({"email": ["email"]}).apply({"email": email}) == {"email": email}


@pytest.mark.parametrize("email", INVALID_EMAILS)
def test_validate_email_fails(email: str) -> None:
    reason = rejection(make_validate({"email": ["email"]}), {"email": email})
    assert reason == "email: not a valid email address (rule: email)"


def test_email_length_limits_of_the_fixtures() -> None:
    assert len(VALID_EMAILS[-1]) == 254
    assert len(INVALID_EMAILS[-1]) == 255


@pytest.mark.parametrize("value", [UUID, UUID.upper(), "00000000-0000-0000-0000-000000000000"])
def test_validate_uuid_passes(value: str) -> None:
    assert make_validate({"id": ["uuid"]}).apply({"id": value}) == {"id": value}


@pytest.mark.parametrize(
    "value",
    [UUID.replace("-", ""), "{" + UUID + "}", UUID[:-1], UUID + "0", UUID.replace("a", "g"), UUID + "\n", " " + UUID],
)
def test_validate_uuid_fails(value: str) -> None:
    assert rejection(make_validate({"id": ["uuid"]}), {"id": value}) == "id: not a valid UUID (rule: uuid)"


@pytest.mark.parametrize("value", ["+12345678", "+4915112345678", "+123456789012345"])
def test_validate_e164_passes(value: str) -> None:
    assert make_validate({"tel": ["e164"]}).apply({"tel": value}) == {"tel": value}


@pytest.mark.parametrize(
    "value",
    [
        "+1234567",
        "+1234567890123456",
        "+0123456789",
        "4915112345678",
        "+49 151 12345678",
        "+49-151-1234",
        "++4915112345678",
        "+٤٩١٥١١٢٣٤٥٦٧٨",  # Arabic-Indic digits
    ],
)
def test_validate_e164_fails(value: str) -> None:
    assert rejection(make_validate({"tel": ["e164"]}), {"tel": value}) == "tel: not an E.164 phone number (rule: e164)"


@pytest.mark.parametrize("value", ["0", "42", "-7", "+3", "007", 42, -1])
def test_validate_integer_passes(value: Any) -> None:
    assert make_validate({"n": ["integer"]}).apply({"n": value}) == {"n": value}


@pytest.mark.parametrize("value", ["4.2", "4a", " 4", "4 ", "-", "1e3", "٤", 4.0, True])
def test_validate_integer_fails(value: Any) -> None:
    assert rejection(make_validate({"n": ["integer"]}), {"n": value}) == "n: not an integer (rule: integer)"


@pytest.mark.parametrize(("value", "ok"), [("abcde", True), ("äbcde", True), ("abcdef", False), (123456, False)])
def test_validate_max_length(value: Any, ok: bool) -> None:
    transform = make_validate({"name": [{"max_length": 5}]})
    if ok:
        assert transform.apply({"name": value}) == {"name": value}
    else:
        assert rejection(transform, {"name": value}) == "name: longer than 5 characters (rule: max_length)"


@pytest.mark.parametrize(("value", "ok"), [("ab", True), ("abc", True), ("a", False), (7, False)])
def test_validate_min_length(value: Any, ok: bool) -> None:
    transform = make_validate({"name": [{"min_length": 2}]})
    if ok:
        assert transform.apply({"name": value}) == {"name": value}
    else:
        assert rejection(transform, {"name": value}) == "name: shorter than 2 characters (rule: min_length)"


@pytest.mark.parametrize(("value", "ok"), [("active", True), ("inactive", True), ("Active", False), ("active ", False)])
def test_validate_enum(value: str, ok: bool) -> None:
    transform = make_validate({"status": [{"enum": ["active", "inactive"]}]})
    if ok:
        assert transform.apply({"status": value}) == {"status": value}
    else:
        assert rejection(transform, {"status": value}) == "status: not one of active, inactive (rule: enum)"


@pytest.mark.parametrize(
    ("value", "ok"), [("ABC", True), ("ABCD", False), ("xABC", False), ("abc", False), ("AB", False)]
)
def test_validate_regex_must_match_the_whole_value(value: str, ok: bool) -> None:
    transform = make_validate({"code": [{"regex": "[A-Z]{3}"}]})
    if ok:
        assert transform.apply({"code": value}) == {"code": value}
    else:
        assert rejection(transform, {"code": value}) == "code: does not match [A-Z]{3} (rule: regex)"


def test_validate_accepts_rules_as_a_mapping() -> None:
    listed = make_validate({"name": ["required", {"max_length": 3}], "code": [{"enum": ["a", "b"]}]})
    mapped = make_validate(
        {"name": {"required": True, "max_length": 3, "email": False}, "code": {"enum": ["a", "b"]}},
    )
    assert mapped.options == listed.options
    assert rejection(mapped, {"name": "abcd", "code": "c"}) == (
        "name: longer than 3 characters (rule: max_length); code: not one of a, b (rule: enum)"
    )


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"fields": {"f": ["emial"]}}, id="unknown-rule"),
        pytest.param({"fields": {"f": [{"max_lenght": 3}]}}, id="unknown-parametrised-rule"),
        pytest.param({"fields": {"f": [{"max_length": 3, "min_length": 1}]}}, id="two-rules-in-one-mapping"),
        pytest.param({"fields": {"f": [{"max_length": -1}]}}, id="negative-length"),
        pytest.param({"fields": {"f": [{"max_length": "many"}]}}, id="non-integer-length"),
        pytest.param({"fields": {"f": [{"enum": []}]}}, id="empty-enum"),
        pytest.param({"fields": {"f": [{"enum": [1, 2]}]}}, id="unquoted-numbers-in-enum"),
        pytest.param({"fields": {"f": [{"regex": "[A-Z"}]}}, id="bad-regex"),
        pytest.param({"fields": {"f": [3]}}, id="rule-not-a-name-or-mapping"),
        pytest.param({"fields": {"f": {"emial": True}}}, id="unknown-rule-in-mapping-form"),
        pytest.param({"fields": {"f": ["email"]}, "mode": "drop"}, id="unknown-mode"),
        pytest.param({"fields": {"f": ["email"]}, "strict": True}, id="unknown-option"),
        pytest.param({}, id="no-fields"),
    ],
)
def test_validate_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ValidateOptions.model_validate(options)


def test_validate_bad_regex_error_names_the_pattern() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"invalid regular expression '\^\[A-Z'"):
        ValidateOptions.model_validate({"fields": {"code": [{"regex": "^[A-Z"}]}})


def test_validate_unknown_rule_error_lists_the_rules() -> None:
    with pytest.raises(pydantic.ValidationError, match="a rule is one of required, email"):
        ValidateOptions.model_validate({"fields": {"f": [{"max_lenght": 3}]}})


def test_validate_mode_defaults_to_reject() -> None:
    assert ValidateOptions.model_validate({"fields": {}}).mode == "reject"


# --- properties -----------------------------------------------------------------------------

FORMAT_VALIDATOR = make_validate({"email": ["email"], "uuid": ["uuid"], "e164": ["e164"]})
FORMAT_REASONS = {
    "email": "email: not a valid email address (rule: email)",
    "uuid": "uuid: not a valid UUID (rule: uuid)",
    "e164": "e164: not an E.164 phone number (rule: e164)",
}
# Characters that matter to the three formats, so generated strings come close to valid ones.
NEAR_MISS = st.text(alphabet="aZ09.-+_@ \t\nü", max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), NEAR_MISS), st.sampled_from(sorted(FORMAT_REASONS)))
def test_format_rules_only_ever_reject(value: str, field: str) -> None:
    try:
        assert FORMAT_VALIDATOR.apply({field: value}) == {field: value}
    except RecordRejected as exc:
        assert exc.reason == FORMAT_REASONS[field]
        return
    # Whatever passes is empty or has the basic shape of its format.
    if not value:
        return
    if field == "email":
        assert value.count("@") == 1 and len(value) <= 254 and value.isascii() and " " not in value
    elif field == "uuid":
        assert len(value) == 36 and value.count("-") == 4
    else:
        assert value[0] == "+" and value[1:].isascii() and value[1:].isdigit() and 8 <= len(value) - 1 <= 15


def test_map_requires_its_from_columns_without_a_default() -> None:
    transform = make_map(
        fields={
            "contactId": "contact_id",
            "email": {"from": "email", "normalize": ["strip"]},
            "phone": {"from": "phone", "default": None},
            "source": {"value": "import"},
        }
    )
    assert transform.required_fields() == {"contact_id": ("fields", "contactId"), "email": ("fields", "email", "from")}


# --- names that look like code ----------------------------------------------------------------

CODE_LIKE_NAMES = ["a'b", 'x"); raise SystemExit("', "line\nbreak", "{data}", "\\"]


@pytest.mark.parametrize("name", CODE_LIKE_NAMES)
def test_map_takes_any_column_and_field_name_literally(name: str) -> None:
    transform = make_map(
        fields={name: {"from": name, "normalize": ["strip"]}, "k": {"value": name}, "d": {"from": f"{name}!", "default": name}},
        keep_unmapped=True,
    )
    assert transform.apply({name: f" {name} ", "other": name}) == {name: name, "k": name, "d": name, "other": name}
    assert rejection(make_map(fields={"f": name}), {}) == f"{name}: column missing from input"


@pytest.mark.parametrize("name", CODE_LIKE_NAMES)
def test_validate_takes_any_field_name_literally(name: str) -> None:
    transform = make_validate({name: ["required", {"enum": [name]}, {"max_length": 3}]})
    assert rejection(transform, {name: name * 4}) == (
        f"{name}: not one of {name} (rule: enum); {name}: longer than 3 characters (rule: max_length)"
    )
    assert rejection(transform, {}) == f"{name}: missing or empty (rule: required)"
