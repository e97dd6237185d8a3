"""Build a transform's per-record function from generated source, once per run.

A transform's options are fixed for the whole run, so the loop over its fields and the
branches on its options can be unrolled into straight-line code once, instead of being
interpreted again for every record. Values from the config (column names, constants,
checks, messages) never appear in the generated text: the code refers to them by
generated names bound in its namespace, so no option can change what the code does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RecordFunction = Callable[[dict[str, Any]], dict[str, Any]]


class Namespace:
    """The values a generated function refers to, each under a generated name."""

    def __init__(self, **builtins: Any) -> None:
        self.values: dict[str, Any] = dict(builtins)

    def name(self, value: Any, prefix: str) -> str:
        """Bind ``value`` to a fresh name starting with ``prefix`` and return the name."""
        name = f"{prefix}{len(self.values)}"
        self.values[name] = value
        return name


def build(name: str, body: list[str], namespace: Namespace) -> RecordFunction:
    """Compile ``def name(data): body`` (lines already indented for the body) and return the function."""
    source = f"def {name}(data):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, f"<{name}>", "exec"), namespace.values)
    function: RecordFunction = namespace.values[name]
    return function
