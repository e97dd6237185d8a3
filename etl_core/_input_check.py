"""The input check: does the start of the input fit the config? Run before anything is sent.

A CSV whose header says ``contactId`` where the config maps ``contact_id`` (or that is
delimited by ``;``, or encoded in cp1252) would otherwise be read to the end with every
row rejected. The source reads its header and a sample (:meth:`Source.sample`); the
first transform says which input fields it needs (:meth:`Transform.required_fields`);
a field that is missing is a configuration error that names the option, the fields the
input has, the closest of them, and the delimiter the header suggests.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._batching import batching_of
from ._errors import ConfigError
from ._spelling import closest
from .base import Sink, Source, Transform
from .config import PipelineConfig, _dotted

#: Records read to check the input.
SAMPLE_SIZE = 1000
#: Delimiters a header of one field may really be split by.
_OTHER_DELIMITERS = (";", "\t", "|", ",")


def check_before_sending(config: PipelineConfig, source: Source, transforms: Sequence[Transform], sink: Sink) -> None:
    """Run every plugin's ``check()``, then the input check (``etl validate``, and a run before it starts).

    Raises:
        ConfigError: The first problem, with the config file and the line of its key.
        PluginError: The sink says it sends in batches but cannot (see ``Sink.batching``).
    """
    try:
        for plugin in (source, *transforms, sink):
            plugin.check()
        batching_of(sink)
        check_input(source, transforms)
    except ConfigError as exc:
        raise config.locate(exc) from None


def check_input(source: Source, transforms: Sequence[Transform], *, sample_size: int = SAMPLE_SIZE) -> None:
    """Check that the input has every field the first transform needs.

    Args:
        source: The source (checked: its options are usable).
        transforms: The transforms, in order; only the first reads the source's fields.
        sample_size: Records the source reads for the check.

    Raises:
        ConfigError: A required field is missing (``transforms[0]...``), or the source
            cannot read its input as configured (the source names the option).
    """
    sample = source.sample(sample_size)
    if sample is None or not sample.fields or not transforms:
        return
    present = set(sample.fields)
    for name, key in transforms[0].required_fields().items():
        if name not in present:
            raise ConfigError(_missing(name, sample.fields), path=_dotted(("transforms", 0, *key)))


def _missing(name: str, fields: list[str]) -> str:
    shown = ", ".join(repr(f) for f in fields[:20]) + (f" and {len(fields) - 20} more" if len(fields) > 20 else "")
    message = f"the input has no field {name!r}; it has {shown}"
    if (close := closest(name, fields)) is not None:
        message += f": did you mean {close!r}?"
    if len(fields) == 1:
        counts = {d: fields[0].count(d) for d in _OTHER_DELIMITERS}
        delimiter, count = max(counts.items(), key=lambda item: item[1])
        if count:
            message += f" (the header is one field: the file looks delimited by {delimiter!r}, see source.delimiter)"
    return message
