"""The ``validate`` transform: reject records whose fields break a rule."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BeforeValidator, Discriminator, Field, Tag

from etl_core import PluginOptions, RecordRejected, Transform

from ._codegen import Namespace, RecordFunction, build

RuleName = Literal["required", "email", "uuid", "e164", "integer"]

#: A compiled rule: truthy when the (non-empty, string) value passes.
Check = Callable[[str], object]

# Explicit ASCII classes throughout: \d and case-insensitive matching would accept
# non-ASCII digits and letters that no API takes.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: A pragmatic RFC 5322 subset: dot-atom local part of at most 64 characters, one @,
#: a domain of valid labels ending in an alphabetic (or punycode) TLD, 254 characters in all.
_EMAIL = re.compile(
    rf"(?=[^@]{{1,64}}@)(?=.{{6,254}}\Z)"
    rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})",
    re.DOTALL,
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_INTEGER = re.compile(r"[+-]?[0-9]+")

#: Rules without parameters: the check (None for ``required``, which is handled apart) and its message.
_NAMED_RULES: dict[str, tuple[Check | None, str]] = {
    "required": (None, "missing or empty"),
    "email": (_EMAIL.fullmatch, "not a valid email address"),
    "uuid": (_UUID.fullmatch, "not a valid UUID"),
    "e164": (_E164.fullmatch, "not an E.164 phone number"),
    "integer": (_INTEGER.fullmatch, "not an integer"),
}


class MaxLengthRule(PluginOptions):
    """``{max_length: N}``: at most N characters."""

    max_length: int = Field(ge=0, description="Largest number of characters allowed.")


class MinLengthRule(PluginOptions):
    """``{min_length: N}``: at least N characters (an empty value still passes unless required)."""

    min_length: int = Field(ge=0, description="Smallest number of characters allowed.")


class EnumRule(PluginOptions):
    """``{enum: [a, b]}``: one of the listed values, compared exactly."""

    enum: list[str] = Field(
        min_length=1,
        description="Allowed values, case-sensitive. Quote values YAML would read as numbers or booleans.",
    )


class RegexRule(PluginOptions):
    """``{regex: "..."}``: the whole value matches the regular expression."""

    regex: str = Field(description="Python regular expression the whole value must match.")

    @pydantic.field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return pattern


def _rule_kind(rule: Any) -> str | None:
    """Tell which rule a config entry is: its name, or the single key of its mapping."""
    if isinstance(rule, str):
        return "name"
    if isinstance(rule, dict) and len(rule) == 1:
        return str(next(iter(rule)))
    if isinstance(rule, PluginOptions):
        return next(iter(type(rule).model_fields))
    return None


Rule = Annotated[
    Annotated[RuleName, Tag("name")]
    | Annotated[MaxLengthRule, Tag("max_length")]
    | Annotated[MinLengthRule, Tag("min_length")]
    | Annotated[EnumRule, Tag("enum")]
    | Annotated[RegexRule, Tag("regex")],
    Discriminator(
        _rule_kind,
        custom_error_type="rule",
        custom_error_message=(
            "a rule is one of required, email, uuid, e164, integer, or a one-key mapping: "
            "{max_length: N}, {min_length: N}, {enum: [...]}, {regex: '...'}"
        ),
    ),
]


def _rules_from_mapping(rules: Any) -> Any:
    """Accept ``{required: true, max_length: 50}`` as ``[required, {max_length: 50}]``."""
    if not isinstance(rules, dict):
        return rules
    return [name if arg is True else {name: arg} for name, arg in rules.items() if arg is not False]


class ValidateOptions(PluginOptions):
    """Options of the ``validate`` transform."""

    fields: dict[str, Annotated[list[Rule], BeforeValidator(_rules_from_mapping)]] = Field(
        description=(
            "Field name -> rules it must pass: names (required, email, uuid, e164, integer) and one-key "
            "mappings ({max_length: N}, {min_length: N}, {enum: [...]}, {regex: '...'}). Also accepted as "
            "a mapping, e.g. {required: true, max_length: 50}. A field that is absent, null or \"\" passes "
            "every rule except required."
        ),
    )
    mode: Literal["reject"] = Field(
        default="reject",
        description="reject: an invalid record goes to the rejects file, its reason listing every failed rule.",
    )


def _compile(field: str, rule: RuleName | PluginOptions) -> tuple[Check | None, str]:
    """Return a rule's check (None for ``required``) and its full failure reason."""
    if isinstance(rule, str):
        check, what = _NAMED_RULES[rule]
        return check, f"{field}: {what} (rule: {rule})"
    if isinstance(rule, MaxLengthRule):
        limit = rule.max_length
        return (lambda v: len(v) <= limit), f"{field}: longer than {limit} characters (rule: max_length)"
    if isinstance(rule, MinLengthRule):
        least = rule.min_length
        return (lambda v: len(v) >= least), f"{field}: shorter than {least} characters (rule: min_length)"
    if isinstance(rule, EnumRule):
        return frozenset(rule.enum).__contains__, f"{field}: not one of {', '.join(rule.enum)} (rule: enum)"
    assert isinstance(rule, RegexRule)
    return re.compile(rule.regex).fullmatch, f"{field}: does not match {rule.regex} (rule: regex)"


def _failures(value: str, checks: tuple[tuple[Check, str], ...]) -> tuple[str, ...]:
    """The reasons of the checks ``value`` fails."""
    return tuple(reason for check, reason in checks if not check(value))


def _test(rule: RuleName | PluginOptions, check: Check, namespace: Namespace) -> str:
    """An expression of the string ``v`` that is truthy when ``v`` passes ``rule``."""
    # The length rules are inlined: a call per field costs more than the comparison.
    if isinstance(rule, MaxLengthRule):
        return f"len(v) <= {namespace.name(rule.max_length, 'limit')}"
    if isinstance(rule, MinLengthRule):
        return f"len(v) >= {namespace.name(rule.min_length, 'limit')}"
    return f"{namespace.name(check, 'check')}(v)"


def _compile_fields(fields: Mapping[str, Sequence[RuleName | PluginOptions]]) -> RecordFunction:
    """Unroll the rules into one function of a record's fields (see :mod:`._codegen`)."""
    namespace = Namespace(RecordRejected=RecordRejected, _failures=_failures)
    body = ["get = data.get", "errors = ()"]
    for field, rules in fields.items():
        required: str | None = None
        checks: list[tuple[Check, str]] = []
        tests: list[str] = []
        for rule in rules:
            check, reason = _compile(field, rule)
            if check is None:
                required = reason
            else:
                checks.append((check, reason))
                tests.append(_test(rule, check, namespace))
        if required is None and not checks:
            continue
        body += [f"v = get({namespace.name(field, 'field')})", "if v is None or v == '':"]
        body.append(f"    errors += ({namespace.name(required, 'reason')},)" if required is not None else "    pass")
        if checks:
            body += [
                "else:",
                # Values from typed sources (JSON numbers, booleans) are checked as text.
                "    if not isinstance(v, str): v = str(v)",
                f"    if not ({' and '.join(tests)}):",
                # Only a failing field pays for running its rules one by one to name them.
                f"        errors += _failures(v, {namespace.name(tuple(checks), 'checks')})",
            ]
    body += ["if errors:", "    raise RecordRejected('; '.join(errors))", "return data"]
    return build("validate_record", body, namespace)


class ValidateTransform(Transform):
    """Check fields against rules and reject the record listing every failure.

    Rules are compiled once, with their reason text already formatted, into one
    function of a record's fields, so a record that passes costs one look-up per field
    and its checks.
    Reasons never quote the value: they end up in logs, where the value may be personal data.
    """

    name = "validate"
    Options = ValidateOptions
    options: ValidateOptions

    def __init__(self, options: ValidateOptions) -> None:
        super().__init__(options)
        self._validate = _compile_fields(options.fields)

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the record unchanged if every rule passes.

        Raises:
            RecordRejected: At least one rule failed; the reason lists all failures,
                joined by ``"; "``, each naming the field and the rule.
        """
        return self._validate(data)
