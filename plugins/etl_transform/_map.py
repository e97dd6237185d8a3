"""The ``map`` transform: rename, select, normalise and add fields."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Discriminator, Field, Tag

from etl_core import PluginOptions, RecordRejected, Transform

from ._codegen import Namespace, RecordFunction, build

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


def _normalize_lines(names: list[str], namespace: Namespace) -> list[str]:
    """Lines that apply normalisers in order to the string ``v``."""
    # Every normaliser is idempotent, so a repeat (e.g. a field's own strip after the
    # transform-wide strip) is dropped rather than run twice per record.
    steps = [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]
    lines: list[str] = []
    may_be_none = False
    for step in steps:
        call = f"v = {namespace.name(_NORMALIZERS[step], 'normalize')}(v)"
        # Only none_if_empty leaves a non-string, which no later step would change.
        lines.append(f"if v is not None: {call}" if may_be_none else call)
        may_be_none = may_be_none or step == "none_if_empty"
    return lines


def _compile(options: MapOptions, consumed: frozenset[str]) -> RecordFunction:
    """Unroll the mapping into one function of a record's fields (see :mod:`._codegen`)."""
    namespace = Namespace(_MISSING=_MISSING, RecordRejected=RecordRejected)
    body = ["get = data.get", "out = {}", "missing = ()"]
    keep = "if not (v is None or v == ''): " if options.drop_empty else ""
    for out_name, spec in options.fields.items():
        if isinstance(spec, str):
            spec = FieldSpec.model_validate({"from": spec})
        store = f"{keep}out[{namespace.name(out_name, 'out')}] = v"
        if spec.from_ is None:
            body += [f"v = {namespace.name(spec.value, 'constant')}", store]
            continue
        normalize = _normalize_lines([*options.normalize, *spec.normalize], namespace)
        body.append(f"v = get({namespace.name(spec.from_, 'column')}, _MISSING)")
        if "default" in spec.model_fields_set:
            # A default is used as is: it is not normalised.
            body += ["if v is _MISSING:", f"    v = {namespace.name(spec.default, 'default')}"]
            if normalize:
                body += ["elif isinstance(v, str):", *(f"    {line}" for line in normalize)]
            body.append(store)
        else:
            reason = namespace.name(f"{spec.from_}: column missing from input", "reason")
            body += ["if v is _MISSING:", f"    missing += ({reason},)", "else:"]
            if normalize:
                body += ["    if isinstance(v, str):", *(f"        {line}" for line in normalize)]
            body.append(f"    {store}")
    body += ["if missing:", "    raise RecordRejected('; '.join(missing))"]
    if options.keep_unmapped:
        # Passed-through fields exclude the source columns (they were mapped) and the
        # output names (the mapped value wins).
        body += [
            "for key, v in data.items():",
            f"    if key not in {namespace.name(consumed, 'consumed')}:",
            f"        {keep}out[key] = v",
        ]
    body.append("return out")
    return build("map_record", body, namespace)


class MapTransform(Transform):
    """Build each output record from input columns and constants.

    The mapping is compiled once into one function of a record's fields, so that
    :meth:`apply` only does dictionary look-ups and the normalisers' string operations.
    """

    name = "map"
    Options = MapOptions
    options: MapOptions

    def __init__(self, options: MapOptions) -> None:
        super().__init__(options)
        columns = {spec if isinstance(spec, str) else spec.from_ for spec in options.fields.values()}
        consumed = frozenset(options.fields) | {column for column in columns if column is not None}
        self._map = _compile(options, consumed)

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
        return self._map(data)
