"""Map a CSV file's columns to the fields a sink takes, with the validate rules they pass.

Pure functions for ``etl guess``: given the file as :mod:`._guess` read it and the
fields the sink describes (:meth:`Sink.guess_fields`), which column feeds each field,
and which rules of the ``validate`` transform to check it with. Every choice comes with
a note saying how it was made, which the generated config shows as a comment.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

from ._guess import SHARE, Sniffed, quoted
from ._spelling import _loose
from .base import SinkField

#: Fewest non-empty values from which a rule is proposed on the sample's word alone.
MIN_VALUES = 3
#: Rules tried on every mapped column, most specific first: the first the sample passes is proposed.
FORMAT_RULES = ("uuid", "email", "e164", "integer")

#: How a column named like a field was matched, by closeness of the names (see ``_name_tier``).
_HOW_NAMED = ("same name", "same name, spaces aside", "same name, case aside", "same name, case, spaces, _ and camelCase aside")

#: Whether a value passes a rule of the ``validate`` transform: ``check(rule, value)``.
RuleCheck = Callable[[str, str], bool]


@dataclasses.dataclass(frozen=True)
class Match:
    """An input column that feeds a field of the sink.

    Attributes:
        field: The field's name.
        column: The input column's name.
        how: How the column was chosen, e.g. ``same name``.
        key: Whether the field identifies the record.
        rules: The proposed validate rules (``required`` first for the key).
        notes: How sure each rule is, and the sink's rules that the sample did not pass.
    """

    field: str
    column: str
    how: str
    key: bool = False
    rules: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which columns feed which fields of the sink.

    Attributes:
        matches: One per field fed, in the sink's order of fields.
        unmapped: ``(column, why)`` for each column sent nowhere.
        missing: The sink's fields no column feeds.
        described: Whether the sink described its fields (else each column feeds its namesake).
        key_note: How the key was chosen, or why there is none.
    """

    matches: list[Match]
    unmapped: list[tuple[str, str]]
    missing: list[str]
    described: bool
    key_note: str

    @property
    def key(self) -> Match | None:
        """The match of the sink's key field, if a column feeds it."""
        return next((match for match in self.matches if match.key), None)


def plan_fields(
    sniffed: Sniffed, fields: Sequence[SinkField], check: RuleCheck, *, sink: str
) -> Plan:
    """Choose the column that feeds each of the sink's fields, and the rules to validate it with.

    A column feeds the field of its name, matched however it is written (``Contact ID``,
    ``contact_id`` and ``contactId`` all match ``contactId``). When several columns
    match, the closest name wins, then the one with more values passing the field's
    rules, then the first. A field no name matches is fed by content (the first column
    whose values pass the field's rules) when it is the key, or when the file has no
    header. Without fields (a sink that does not describe them), every column feeds the
    field of its own name, and the first column of unique, non-empty values named like
    an id (or holding UUIDs) is taken for the key.

    Args:
        sniffed: The file, as :func:`sniff` read it.
        fields: The sink's fields (:meth:`Sink.guess_fields`).
        check: Whether a value passes a validate rule.
        sink: The sink's name, for notes.
    """
    values = sniffed.values()
    described = bool(fields)
    if not described:
        key = _key_column(sniffed.names, values, check)
        fields = [SinkField(name, key=name == key) for name in sniffed.names]
    taken: dict[str, Match] = {}
    unmapped: dict[str, str] = {}
    missing: list[str] = []
    for field in fields:
        column, how, others = _by_name(field, sniffed.names, values, check, taken)
        if column is None and field.rules and (field.key or not sniffed.header):
            column, how = _by_content(field, sniffed.names, values, check, taken)
        if column is None:
            missing.append(field.name)
            continue
        rules, notes = propose_rules(field, values[column], check)
        taken[column] = Match(field.name, column, how, field.key, rules, notes)
        for other, why in others:
            unmapped[other] = f"also named like {field.name}, which {quoted(column)} feeds: {why}"
    for name in sniffed.names:
        if name not in taken and name not in unmapped:
            unmapped[name] = f"the {sink} sink takes no field of this name"
    order = {field.name: position for position, field in enumerate(fields)}
    matches = sorted(taken.values(), key=lambda match: order[match.field])
    unsent = [(name, unmapped[name]) for name in sniffed.names if name in unmapped and name not in taken]
    return Plan(matches, unsent, missing, described, _key_note(described, fields, matches))


def _key_note(described: bool, fields: Sequence[SinkField], matches: Sequence[Match]) -> str:
    key = next((match for match in matches if match.key), None)
    if not described:
        if key is None:
            return "none: no column of unique, non-empty values is named like an id or holds UUIDs"
        return "likely: its sample values are unique and non-empty, and it is named like an id or holds UUIDs"
    if key is None:
        wanted = [field.name for field in fields if field.key]
        if not wanted:
            return "none: the sink names no key field"
        return f"none: no column feeds the sink's key field {wanted[0]}; map one and name it here"
    return "the sink's key field" + (f", found {key.how}" if key.how.startswith("by content") else "")


def _by_name(
    field: SinkField, names: Sequence[str], values: Mapping[str, list[str]], check: RuleCheck, taken: Mapping[str, Match]
) -> tuple[str | None, str, list[tuple[str, str]]]:
    """The column named like ``field``, how, and the other columns named like it with why they lost."""
    candidates = sorted(
        (tier, -_passing(field.rules, values[name], check), position, name)
        for position, name in enumerate(names)
        if name not in taken and (tier := _name_tier(name, field.name)) is not None
    )
    if not candidates:
        return None, "", []
    best = candidates[0]
    how = _HOW_NAMED[best[0]]
    others = []
    for candidate in candidates[1:]:
        if candidate[0] != best[0]:
            why = "its name is further from the field's"
        elif candidate[1] != best[1]:
            why = f"fewer of its values pass {', '.join(field.rules)}"
        else:
            why = "it comes later in the file"
        others.append((candidate[3], why))
    return best[3], how, others


def _name_tier(column: str, field: str) -> int | None:
    """How closely a column's name matches a field's: 0 the same ... 3 the same letters and digits; None not at all."""
    if column == field:
        return 0
    if column.strip() == field:
        return 1
    if column.strip().casefold() == field.casefold():
        return 2
    if _loose(column) == _loose(field):
        return 3
    return None


def _by_content(
    field: SinkField, names: Sequence[str], values: Mapping[str, list[str]], check: RuleCheck, taken: Mapping[str, Match]
) -> tuple[str | None, str]:
    """The first free column whose values pass the field's rules, and how it was chosen."""
    for name in names:
        present = [value for value in values[name] if value]
        if name in taken or not present:
            continue
        passed = _passing(field.rules, present, check)
        if passed >= SHARE * len(present):
            return name, f"by content: {_share(passed, len(present))} pass {', '.join(field.rules)}"
    return None, ""


def _key_column(names: Sequence[str], values: Mapping[str, list[str]], check: RuleCheck) -> str | None:
    """The first column of unique, non-empty values named like an id or holding UUIDs."""
    for name in names:
        column = values[name]
        if not column or not all(column) or len(set(column)) != len(column):
            continue
        if _words(name)[-1:] == ["id"] or _passing(("uuid",), column, check) == len(column):
            return name
    return None


def _words(name: str) -> list[str]:
    """The words of a name, lower-cased: ``contactId``, ``Contact ID`` and ``contact_id`` are ``contact``, ``id``."""
    return [word.lower() for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", name)]


def propose_rules(field: SinkField, values: Sequence[str], check: RuleCheck) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Propose the validate rules for a field fed by a column with ``values``.

    ``required`` for the key; each rule the sink suggests that at least :data:`SHARE` of
    the non-empty values pass (or every one, when the sample has no value to check);
    else the first of :data:`FORMAT_RULES` they pass, given :data:`MIN_VALUES` of them.

    Returns:
        The rules, and a note on each (how many values pass it; a rule of the sink's
        left out, and why).
    """
    present = [value for value in values if value]
    rules: list[str] = ["required"] if field.key else []
    notes: list[str] = ["required: the key"] if field.key else []
    for rule in field.rules:
        passed = sum(check(rule, value) for value in present)
        if not present:
            rules.append(rule)
            notes.append(f"{rule}: suggested by the sink; no sample value to check")
        elif passed >= SHARE * len(present):
            rules.append(rule)
            notes.append(f"{rule}: suggested by the sink; {_share(passed, len(present))} pass")
        else:
            notes.append(f"{rule} left out: suggested by the sink, but only {_share(passed, len(present))} pass")
    if rules == ["required"] * field.key and len(present) >= MIN_VALUES:  # no rule of the sink's kept: the sample's own
        for rule in FORMAT_RULES:
            if rule in field.rules:
                continue
            passed = sum(check(rule, value) for value in present)
            if passed >= SHARE * len(present):
                rules.append(rule)
                notes.append(f"{rule}: {_share(passed, len(present))} pass")
                break
    return tuple(rules), tuple(notes)


def _passing(rules: Sequence[str], values: Sequence[str], check: RuleCheck) -> int:
    """How many non-empty values pass every rule (0 without rules)."""
    if not rules:
        return 0
    return sum(all(check(rule, value) for rule in rules) for value in values if value)


def _share(passed: int, total: int) -> str:
    return f"{passed} of {total} sample values ({100 * passed // total}%)"
