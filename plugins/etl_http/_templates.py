"""JSON templates: request bodies and query values filled from a record's fields.

A template is any JSON value. In its strings, ``{field}`` stands for the value of a
record field and ``{{``/``}}`` for literal braces:

* a string that is exactly one placeholder, ``"{age}"``, becomes the field's value with
  its own JSON type (a number stays a number);
* a placeholder inside other text, ``"Dear {firstName}"``, is replaced by the value's text;
* a string whose field is missing, null or ``""`` is left out of its object or list, so
  a blank cell leaves the remote field as it is.

Nothing a record holds is ever parsed as a template: values are inserted as data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ITEMS", "OMIT", "Template", "TemplateError"]

#: The placeholder of a batch body that the list of rendered items replaces.
ITEMS = "items"

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class _Omit:
    """Marker of a value left out (its field is missing or empty)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OMIT"


#: What :meth:`Template.render` returns when the whole template is left out.
OMIT: Any = _Omit()

_Render = Callable[[Mapping[str, Any]], Any]


class TemplateError(ValueError):
    """A template cannot be compiled; the message says where and why."""


class Template:
    """A compiled JSON template.

    Args:
        value: The template, as read from the config (dicts, lists, strings, numbers...).

    Attributes:
        fields: The names of the placeholders, in order of first appearance.

    Raises:
        TemplateError: A string has a lone ``{`` or ``}``, a placeholder that is not a
            simple field name, or an object key is not a string.
    """

    def __init__(self, value: Any) -> None:
        self._names: dict[str, None] = {}
        self._render = self._compile(value, "")
        self.fields = tuple(self._names)

    def render(self, data: Mapping[str, Any]) -> Any:
        """Fill the template from a record's fields.

        Args:
            data: The record's fields.

        Returns:
            The JSON value, or :data:`OMIT` when the template is a single placeholder
            whose field is missing or empty.
        """
        return self._render(data)

    def _compile(self, value: Any, where: str) -> _Render:
        if isinstance(value, str):
            return self._compile_text(value, where or "the template")
        if isinstance(value, dict):
            parts: list[tuple[str, _Render]] = []
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TemplateError(f"{where or 'the template'}: object keys must be strings")
                parts.append((key, self._compile(item, f"{where}.{key}" if where else key)))

            def render_object(data: Mapping[str, Any]) -> Any:
                result = {}
                for key, render in parts:
                    item = render(data)
                    if item is not OMIT:
                        result[key] = item
                return result

            return render_object
        if isinstance(value, list):
            items = [self._compile(item, f"{where}[{index}]") for index, item in enumerate(value)]

            def render_list(data: Mapping[str, Any]) -> Any:
                return [item for item in (render(data) for render in items) if item is not OMIT]

            return render_list
        return lambda data: value

    def _compile_text(self, text: str, where: str) -> _Render:
        pieces: list[str] = []  # literal text and field names, alternating (even: text)
        literal: list[str] = []
        position = 0
        for match in _TOKEN.finditer(text):
            literal.append(text[position : match.start()])
            position = match.end()
            token = match.group()
            if token in ("{{", "}}"):
                literal.append(token[0])
            elif match.group(1) is None:
                raise TemplateError(f"{where}: lone {token!r} (write {token * 2!r} for a literal brace)")
            else:
                pieces += ["".join(literal), match.group(1)]
                literal = []
                self._names.setdefault(match.group(1), None)
        pieces.append("".join(literal) + text[position:])
        if len(pieces) == 1:
            constant = pieces[0]
            return lambda data: constant
        if len(pieces) == 3 and pieces[0] == pieces[2] == "":
            name = pieces[1]

            def render_value(data: Mapping[str, Any]) -> Any:
                value = data.get(name)
                return OMIT if value is None or value == "" else value

            return render_value
        texts, names = pieces[0::2], pieces[1::2]

        def render_text(data: Mapping[str, Any]) -> Any:
            out = [texts[0]]
            for name, after in zip(names, texts[1:], strict=True):
                value = data.get(name)
                if value is None or value == "":
                    return OMIT
                out += [str(value), after]
            return "".join(out)

        return render_text
