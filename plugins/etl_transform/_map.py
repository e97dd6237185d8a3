"""The ``map`` transform: rename, select, normalise and add fields."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Discriminator, Field, Tag

from etl_core import PluginOptions, RecordRejected, Transform

Normalizer = Literal["strip", "lower", "upper", "title", "collapse_whitespace", "digits_only", "none_if_empty"]

_NORMALIZER_DOC = (
    "strip (trim both ends), lower, upper, title, collapse_whitespace (runs of whitespace to one space, "
    'ends trimmed), digits_only (keep only 0-9, e.g. phone numbers), none_if_empty ("" -> null).'
)

#: A constant or default value. Scalars only: the same object lands in every output
#: record, so a mutable list or mapping would be shared between records.
Scalar = str | int | float | bool | None

_NON_DIGITS = re.compile(r"[^0-9]")

_NORMALIZERS: dict[str, Callable[[str], str | None]] = {
    "strip": str.strip,
    "lower": str.lower,
    "upper": str.upper,
    "title": str.title,
    # split() without arguments also trims both ends, which is what a collapsed value wants.
    "collapse_whitespace": lambda s: " ".join(s.split()),
    "digits_only": lambda s: _NON_DIGITS.sub("", s),
    "none_if_empty": lambda s: s or None,
}

# Marks an absent input column or an absent ``default``; None is a legitimate value of both.
_MISSING: Any = object()


class FieldSpec(PluginOptions):
    """Where one output field comes from: an input column or a constant."""

    from_: str | None = Field(
        default=None,
        alias="from",
        min_length=1,
        description="Input column to copy. Exactly one of `from` and `value` is required.",
    )
    value: Scalar = Field(
        default=None,
        description="Constant written to every record (not normalised). Exactly one of `from` and `value` is required.",
    )
    normalize: list[Normalizer] = Field(
        default=[],
        description=(
            "Normalisers applied in order to the column's value, after the transform-wide `normalize` list. "
            "Only string values are changed; other values pass through. Normalisers: " + _NORMALIZER_DOC
        ),
    )
    default: Scalar = Field(
        default=None,
        description=(
            "Value used, as is, when the `from` column is absent from the input record. "
            "Without it an absent column rejects the record."
        ),
    )

    @pydantic.model_validator(mode="after")
    def _check_source(self) -> FieldSpec:
        # model_fields_set tells `value: null` (a null constant) apart from no `value` at all.
        has_value = "value" in self.model_fields_set
        if (self.from_ is not None) == has_value:
            raise ValueError("give exactly one of `from` (an input column) and `value` (a constant)")
        if has_value and ("default" in self.model_fields_set or self.normalize):
            raise ValueError("`default` and `normalize` apply to `from` columns, not to a constant `value`")
        return self


def _spec_kind(spec: Any) -> str:
    return "column" if isinstance(spec, str) else "spec"


#: A field spec, or the name of an input column as shorthand for ``{from: column}``.
FieldSpecOrColumn = Annotated[
    Annotated[str, pydantic.StringConstraints(min_length=1), Tag("column")] | Annotated[FieldSpec, Tag("spec")],
    Discriminator(_spec_kind),
]


class MapOptions(PluginOptions):
    """Options of the ``map`` transform."""

    fields: dict[str, FieldSpecOrColumn] = Field(
        description=(
            "Output field name -> where its value comes from, in output order: an input column name "
            "(shorthand for `{from: column}`) or a mapping with `from` or `value`, and optionally "
            "`normalize` and `default`."
        ),
    )
    keep_unmapped: bool = Field(
        default=False,
        description=(
            "false: output only the mapped fields. true: also pass through, unchanged and after the mapped "
            "fields, every input field that is neither a `from` column nor an output field name."
        ),
    )
    drop_empty: bool = Field(
        default=False,
        description=(
            'Drop output fields whose value is null or "" after normalisation (mapped and passed-through '
            "fields alike), so a partial update leaves those fields untouched."
        ),
    )
    normalize: list[Normalizer] = Field(
        default=[],
        description=(
            "Normalisers applied to every `from` field before the field's own `normalize` list: " + _NORMALIZER_DOC
        ),
    )


def _chain(names: list[str]) -> Callable[[Any], Any] | None:
    """Compose normalisers into one function, or None when there are none."""
    # Every normaliser is idempotent, so a repeat (e.g. a field's own strip after the
    # transform-wide strip) is dropped rather than run twice per record.
    steps = tuple(_NORMALIZERS[name] for i, name in enumerate(names) if i == 0 or names[i - 1] != name)
    if not steps:
        return None
    if len(steps) == 1:
        step = steps[0]
        return lambda value: step(value) if isinstance(value, str) else value

    def run(value: Any) -> Any:
        if isinstance(value, str):
            for step in steps:
                value = step(value)
                # Only none_if_empty leaves a non-string, which no later step would change.
                if value is None:
                    break
        return value

    return run


class MapTransform(Transform):
    """Build each output record from input columns and constants.

    The mapping is compiled once into a flat list of steps so that :meth:`apply`
    only does dictionary look-ups and the normalisers' string operations.
    """

    name = "map"
    Options = MapOptions
    options: MapOptions

    def __init__(self, options: MapOptions) -> None:
        super().__init__(options)
        # (output name, input column or None for a constant, normaliser, default or constant)
        self._steps: list[tuple[str, str | None, Callable[[Any], Any] | None, Any]] = []
        for out_name, spec in options.fields.items():
            if isinstance(spec, str):
                spec = FieldSpec.model_validate({"from": spec})
            if spec.from_ is None:
                self._steps.append((out_name, None, None, spec.value))
            else:
                default = spec.default if "default" in spec.model_fields_set else _MISSING
                normalize = _chain([*options.normalize, *spec.normalize])
                self._steps.append((out_name, spec.from_, normalize, default))
        # Passed-through fields exclude the source columns (they were mapped) and the
        # output names (the mapped value wins).
        self._consumed = frozenset(options.fields) | {column for _, column, _, _ in self._steps if column}

    def required_fields(self) -> dict[str, tuple[str | int, ...]]:
        """The ``from`` columns without a ``default``: a record without one is rejected."""
        required: dict[str, tuple[str | int, ...]] = {}
        for out_name, spec in self.options.fields.items():
            if isinstance(spec, str):
                required.setdefault(spec, ("fields", out_name))
            elif spec.from_ is not None and "default" not in spec.model_fields_set:
                required.setdefault(spec.from_, ("fields", out_name, "from"))
        return required

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the mapped record.

        Raises:
            RecordRejected: A `from` column without a default is absent; the reason
                names every such column.
        """
        drop_empty = self.options.drop_empty
        out: dict[str, Any] = {}
        missing: list[str] = []
        for out_name, column, normalize, default in self._steps:
            if column is None:
                value = default
            else:
                value = data.get(column, _MISSING)
                if value is _MISSING:
                    if default is _MISSING:
                        missing.append(f"{column}: column missing from input")
                        continue
                    value = default
                elif normalize is not None:
                    value = normalize(value)
            if drop_empty and (value is None or value == ""):
                continue
            out[out_name] = value
        if missing:
            raise RecordRejected("; ".join(missing))
        if self.options.keep_unmapped:
            consumed = self._consumed
            for key, value in data.items():
                if key in consumed or (drop_empty and (value is None or value == "")):
                    continue
                out[key] = value
        return out
