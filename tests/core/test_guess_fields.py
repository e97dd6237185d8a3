"""Mapping a CSV file's columns to a sink's fields, and proposing validate rules (etl guess)."""

from __future__ import annotations

import csv
import io

import pytest

from etl_core import Sink, SinkField
from etl_core._guess import sniff
from etl_core._guess_command import _rule_check
from etl_core._guess_fields import RuleCheck, plan_fields, propose_rules
from etl_cxone import CxoneSink
from etl_cxone.sandbox import CONTACT_FIELDS, contact_id

FIELDS = CxoneSink.guess_fields()


@pytest.fixture(scope="module")
def check(registry) -> RuleCheck:
    """The rules as the installed validate transform judges them."""
    return _rule_check(registry)


def table(rows: list[list[str]], delimiter: str = ",") -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return buffer.getvalue().encode()


def plan(rows: list[list[str]], check: RuleCheck, fields: tuple[SinkField, ...] = FIELDS):
    return plan_fields(sniff(table(rows)), fields, check, sink="cxone")


def contacts(header: list[str], count: int = 5) -> list[list[str]]:
    """A header over rows whose columns hold what the header's position says: id, email, name, phone."""
    values = [
        lambda i: contact_id(i),
        lambda i: f"User{i}@Example.com",
        lambda i: f"Name {i}",
        lambda i: f"+1415555{i:04d}",
    ]
    return [header, *([values[c](i) for c in range(len(header))] for i in range(count))]


def test_the_cxone_sink_describes_its_key_and_the_fields_a_patch_may_set():
    assert FIELDS[0] == SinkField("contactId", rules=("uuid",), key=True)
    assert [field.name for field in FIELDS[1:]] == list(CONTACT_FIELDS)
    assert Sink.guess_fields() == ()


@pytest.mark.parametrize(
    ("id_column", "email_column", "how"),
    [
        ("contactId", "email", "same name"),
        ("contactId ", " email", "same name, spaces aside"),
        ("CONTACTID", "EMAIL", "same name, case aside"),
        ("contact_id", "E-mail", "same name, case, spaces, _ and camelCase aside"),
        ("Contact ID", " e_mail ", "same name, case, spaces, _ and camelCase aside"),
    ],
)
def test_columns_are_matched_by_name_however_written(check, id_column, email_column, how):
    result = plan(contacts([id_column, email_column]), check)
    assert [(m.field, m.column) for m in result.matches] == [("contactId", id_column), ("email", email_column)]
    assert result.matches[0].how == how
    assert result.key is not None and result.key.field == "contactId" and result.key_note == "the sink's key field"
    assert result.matches[0].rules == ("required", "uuid")
    assert result.matches[1].rules == ("email",)
    assert result.unmapped == []
    assert result.missing == ["firstName", "lastName", "phone", "city", "country", "externalId"]


def test_of_two_email_columns_the_one_with_more_valid_values_feeds_email(check):
    rows = [["Contact ID", " Email ", "EMAIL"]] + [
        [contact_id(i), "" if i % 2 else f"other{i}@example.com", f"user{i}@example.com"] for i in range(6)
    ]
    result = plan(rows, check)
    assert [(m.field, m.column) for m in result.matches] == [("contactId", "Contact ID"), ("email", "EMAIL")]
    assert result.unmapped == [(" Email ", 'also named like email, which "EMAIL" feeds: fewer of its values pass email')]


def test_of_two_equally_good_columns_the_closer_name_then_the_first_wins(check):
    rows = [["EMAIL", "email", "E-Mail"], *([f"a{i}@example.com"] * 3 for i in range(4))]
    result = plan(rows, check)
    assert result.matches[0].column == "email"
    assert dict(result.unmapped) == {
        "EMAIL": 'also named like email, which "email" feeds: its name is further from the field\'s',
        "E-Mail": 'also named like email, which "email" feeds: its name is further from the field\'s',
    }
    rows = [["EMAIL", "Email"], *([f"a{i}@example.com"] * 2 for i in range(4))]
    assert plan(rows, check).unmapped == [("Email", 'also named like email, which "EMAIL" feeds: it comes later in the file')]


def test_the_key_is_found_by_content_when_no_column_is_named_like_it(check):
    rows = [["Reference", "Id", "Mail address"]] + [[f"R{i}", contact_id(i), f"u{i}@example.com"] for i in range(5)]
    result = plan(rows, check)
    assert [(m.field, m.column) for m in result.matches] == [("contactId", "Id")]
    assert result.matches[0].how == "by content: 5 of 5 sample values (100%) pass uuid"
    assert result.key_note == "the sink's key field, found by content: 5 of 5 sample values (100%) pass uuid"
    # With a header, only the key is found by content: the email column is named otherwise.
    assert [column for column, _ in result.unmapped] == ["Reference", "Mail address"]


def test_without_a_header_every_field_with_rules_is_found_by_content(check):
    rows = contacts(["x", "y", "z", "w"])[1:]
    result = plan(rows, check)
    assert [(m.field, m.column) for m in result.matches] == [
        ("contactId", "column_1"),
        ("email", "column_2"),
        ("phone", "column_4"),
    ]
    assert result.unmapped == [("column_3", "the cxone sink takes no field of this name")]


def test_without_a_key_column_the_plan_says_so(check):
    result = plan([["email"], ["a@example.com"], ["b@example.com"]], check)
    assert result.key is None
    assert result.key_note == "none: no column feeds the sink's key field contactId; map one and name it here"


def test_a_sink_that_does_not_describe_its_fields_gets_every_column_and_a_guessed_key(check):
    rows = [["Name", "Customer Id", "Mail", "Age"]] + [[f"N{i % 2}", f"C-{i}", f"u{i}@example.com", str(20 + i)] for i in range(5)]
    result = plan(rows, check, fields=())
    assert [(m.field, m.column, m.how) for m in result.matches] == [
        ("Name", "Name", "same name"),
        ("Customer Id", "Customer Id", "same name"),
        ("Mail", "Mail", "same name"),
        ("Age", "Age", "same name"),
    ]
    assert result.key is not None and result.key.field == "Customer Id"
    assert result.key_note.startswith("likely:")
    assert [m.rules for m in result.matches] == [(), ("required",), ("email",), ("integer",)]
    assert not result.described and result.unmapped == [] and result.missing == []


@pytest.mark.parametrize(
    "rows",
    [
        [["id", "email"]] + [["1", f"u{i}@example.com"] for i in range(4)],  # repeated values
        [["Paid", "email"]] + [[f"{i}.00", f"u{i}@example.com"] for i in range(4)],  # not named like an id
    ],
)
def test_no_key_is_guessed_from_repeated_values_or_a_name_that_only_ends_in_id(check, rows):
    result = plan(rows, check, fields=())
    assert result.key is None and result.key_note.startswith("none:")


@pytest.mark.parametrize(
    ("values", "rules", "notes"),
    [
        (["+14155550100"] * 9 + ["0415"], ("e164",), ["e164: suggested by the sink; 9 of 10 sample values (90%) pass"]),
        (
            ["+14155550100"] * 8 + ["0415"] * 2,
            ("integer",),
            [
                "e164 left out: suggested by the sink, but only 8 of 10 sample values (80%) pass",
                "integer: 10 of 10 sample values (100%) pass",
            ],
        ),
        (["(415) 555-0100"] * 5, (), ["e164 left out: suggested by the sink, but only 0 of 5 sample values (0%) pass"]),
        (["", ""], ("e164",), ["e164: suggested by the sink; no sample value to check"]),
    ],
)
def test_a_rule_the_sink_suggests_is_kept_when_nine_in_ten_values_pass(check, values, rules, notes):
    assert propose_rules(SinkField("phone", rules=("e164",)), values, check) == (rules, tuple(notes))


def test_a_rule_from_the_values_alone_needs_three_of_them(check):
    field = SinkField("ref")
    assert propose_rules(field, ["12", "", "13"], check) == ((), ())
    assert propose_rules(field, ["12", "13", "14"], check) == (("integer",), ("integer: 3 of 3 sample values (100%) pass",))
    # The most specific rule only: E.164 numbers are integers too.
    assert propose_rules(field, ["+14155550100"] * 3, check)[0] == ("e164",)


def test_the_key_is_required(check):
    rules, notes = propose_rules(SinkField("id", key=True), [], check)
    assert rules == ("required",) and notes == ("required: the key",)
