"""Write what ``etl guess`` found as a pipeline config: YAML with a comment on every guess.

The config reads the file with the ``csv`` source, maps and checks its columns with the
``map`` and ``validate`` transforms, and sends to the sink; the sink's required options
are ``${SINK_OPTION}`` variables, so credentials stay out of the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import pydantic
import pydantic_core
import yaml

from ._guess import Sniffed, quoted
from ._guess_fields import Plan
from .base import PluginOptions

#: The plugins a generated config uses, besides its sink.
SOURCE, MAP, VALIDATE = "csv", "map", "validate"
#: Names YAML would read as something else than a string when plain.
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclasses.dataclass(frozen=True)
class Target:
    """The sink a generated config sends to.

    Attributes:
        name: The sink's ``type``.
        options: Its options model, for the required options and the defaults of the others.
        has_sandbox: Whether ``etl run --sandbox`` works with it.
    """

    name: str
    options: type[PluginOptions]
    has_sandbox: bool


def render_config(*, path: str, sniffed: Sniffed, plan: Plan, target: Target, config: str) -> str:
    """Return the config's YAML text.

    Args:
        path: The CSV file, as given on the command line (the config reads it from there).
        sniffed: How to read it.
        plan: Which column feeds which field, with the rules.
        target: The sink.
        config: What to call the config file in the instructions at its top.
    """
    pipeline = pipeline_name(path)
    lines = [
        *_instructions(path, target, config, sniffed),
        f"pipeline: {pipeline}",
    ]
    if plan.key is not None:
        lines.append(f"key: {_key(plan.key.field)}  # {plan.key_note}")
    else:
        lines.append(f"# key: {plan.key_note}")
    lines += ["", *_source(path, sniffed), "", *_transforms(plan, target.name), "", *_sink(target), ""]
    lines += ["output:", f"  dir: {_value(os.path.join('out', pipeline))}  # the run's report, rejects and checkpoints"]
    return "\n".join(lines) + "\n"


def pipeline_name(path: str) -> str:
    """A pipeline name from the file's name: what ``pipeline`` accepts (letters, digits, ``_.-``)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "guessed"


def _instructions(path: str, target: Target, config: str, sniffed: Sniffed) -> list[str]:
    # A comment ends at a line break: a name that could hold one is quoted.
    config = config if re.fullmatch(r"[\w./-]+", config) else quoted(config)
    count = len(sniffed.rows)
    rows = f"the {'first ' if not sniffed.complete else ''}{count} row{'' if count == 1 else 's'}"
    lines = [
        f"# Starter config guessed by `etl guess` from {rows} of {quoted(path)}.",
        "# Check every guess (the comments say how sure each is), then:",
        f"#   etl validate {config}",
        f"#   etl run {config} --dry-run    # read, map and validate; send nothing",
    ]
    if target.has_sandbox:
        lines.append(f"#   etl run {config} --sandbox    # send to the {target.name} sink's local sandbox")
    return [*lines, f"#   etl run {config}", "#"]


def _source(path: str, sniffed: Sniffed) -> list[str]:
    notes = sniffed.notes
    lines = [
        "source:",
        f"  type: {SOURCE}",
        f"  path: {_value(path)}  # a relative path is read from the current directory",
        f"  encoding: {sniffed.encoding}  # {notes['encoding']}",
        f"  delimiter: {quoted(sniffed.delimiter)}  # {_DELIMITER_NAMES[sniffed.delimiter]}; {notes['delimiter']}",
        f"  header: {'true' if sniffed.header else 'false'}  # {notes['header']}",
    ]
    if sniffed.renamed:
        why = "the header's empty or repeated names, renamed" if sniffed.header else "names for the columns"
        lines.append(f"  columns: [{', '.join(_value(name) for name in sniffed.names)}]  # {why}")
    return lines


def _transforms(plan: Plan, sink: str) -> list[str]:
    if plan.described:
        how = f"  # Each field of the {sink} sink from the input column named like it (case, spaces, _ and camelCase"
        how += "\n  # aside), its value trimmed (an email address also lower-cased)."
    else:
        how = f"  # Each column to the field of its own name (the {sink} sink does not say which fields it takes),"
        how += "\n  # its value trimmed (an email address also lower-cased)."
    lines = ["transforms:", *how.splitlines(), f"  - type: {MAP}", "    fields:"]
    for match in plan.matches:
        normalize = "strip, lower" if "email" in match.rules else "strip"
        lines.append(f"      {_key(match.field)}: {{from: {_value(match.column)}, normalize: [{normalize}]}}  # {match.how}")
    lines.append("    drop_empty: true  # a blank cell leaves the field out, so the destination keeps its value")
    if plan.unmapped:
        lines.append("    # Columns not sent:")
        lines += [f"    #   {quoted(column)}: {why}" for column, why in plan.unmapped]
    if plan.missing:
        lines.append(f"    # Fields of the {sink} sink no column feeds: {', '.join(plan.missing)}")
    checked = [match for match in plan.matches if match.rules]
    unchecked = [match for match in plan.matches if match.notes and not match.rules]
    if checked:
        lines += [f"  - type: {VALIDATE}", "    fields:"]
        lines += [f"      {_key(m.field)}: [{', '.join(m.rules)}]  # {'; '.join(m.notes)}" for m in checked]
    indent = "      " if checked else "  "
    lines += [f"{indent}# {_key(m.field)}: {'; '.join(m.notes)}" for m in unchecked]
    return lines


def _sink(target: Target) -> list[str]:
    required: list[str] = []
    optional: list[str] = []
    # Options required in the usual form though optional in the model (e.g. credentials
    # that an alternative key can replace) are written as variables too.
    wanted = getattr(target.options, "guess_variables", ())
    for name, field in target.options.model_fields.items():
        key = field.alias or name
        if field.is_required() or name in wanted:
            required.append(f"  {key}: ${{{_variable(target.name, key)}}}")
        else:
            optional.append(f"  # {key}: {_default(field)}")
    lines = ["sink:", f"  type: {target.name}"]
    if required:
        lines += ["  # Required: set these environment variables (credentials stay out of this file).", *required]
    if optional:
        lines += ["  # Optional, shown with their defaults (`etl schema` describes each):", *optional]
    return lines


def _variable(sink: str, option: str) -> str:
    """The environment variable of a sink's option, e.g. ``CXONE_CLIENT_SECRET``."""
    return re.sub(r"[^A-Z0-9]+", "_", f"{sink}_{option}".upper()).strip("_")


def _default(field: pydantic.fields.FieldInfo) -> str:
    value: Any = pydantic_core.to_jsonable_python(field.get_default(call_default_factory=True))
    # Dumped in a list, so that a scalar comes out in flow style without a document end marker.
    dumped: str = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=1 << 30)
    return dumped.strip()[1:-1]


def _key(name: str) -> str:
    """A mapping key: plain when YAML reads it back as the same string, else double-quoted."""
    return name if _PLAIN.fullmatch(name) and name.lower() not in _YAML_WORDS else quoted(name)


def _value(text: str) -> str:
    """A string value: like a key, with ``$`` doubled so that ``${...}`` interpolation leaves it as written."""
    return _key(text.replace("$", "$$"))
