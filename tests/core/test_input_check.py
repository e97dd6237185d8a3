"""The input check: the first transform's required fields against the source's sample."""

from __future__ import annotations

import pytest

from etl_core import ConfigError, InputSample, Record, Source, Transform
from etl_core._input_check import check_input


class SampledSource(Source):
    name = "sampled"

    def __init__(self, fields: list[str] | None) -> None:
        super().__init__(Source.Options())
        self._fields = fields

    def sample(self, count: int) -> InputSample | None:
        if self._fields is None:
            return None
        return InputSample(self._fields, [Record(dict.fromkeys(self._fields, "x"), line=2)])


class Needs(Transform):
    name = "needs"

    def __init__(self, *fields: str) -> None:
        super().__init__(Transform.Options())
        self._fields = fields

    def required_fields(self) -> dict[str, tuple[str | int, ...]]:
        return {f: ("fields", f.upper(), "from") for f in self._fields}


def test_an_input_with_every_required_field_passes():
    check_input(SampledSource(["contact_id", "email", "extra"]), [Needs("contact_id", "email")])


def test_only_the_first_transform_reads_the_input():
    check_input(SampledSource(["contact_id"]), [Needs("contact_id"), Needs("contactId")])


def test_a_source_that_cannot_be_sampled_is_not_checked():
    check_input(SampledSource(None), [Needs("contact_id")])


def test_a_missing_field_names_the_option_the_fields_there_are_and_the_closest():
    with pytest.raises(ConfigError) as error:
        check_input(SampledSource(["Contact ID", "EMAIL"]), [Needs("contact_id")])
    assert error.value.path == "transforms[0].fields.CONTACT_ID.from"
    assert error.value.message == "the input has no field 'contact_id'; it has 'Contact ID', 'EMAIL': did you mean 'Contact ID'?"


def test_a_header_of_one_field_suggests_the_delimiter_it_holds():
    with pytest.raises(ConfigError) as error:
        check_input(SampledSource(["contact_id\tname\temail"]), [Needs("contact_id")])
    assert "the file looks delimited by '\\t', see source.delimiter" in error.value.message
