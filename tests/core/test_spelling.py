"""Did you mean...?"""

from __future__ import annotations

import pytest

from etl_core._spelling import closest


@pytest.mark.parametrize(
    ("name", "candidates", "expected"),
    [
        ("contact_id", ["contactId", "email"], "contactId"),
        ("first_name", ["First Name", "firstName"], "First Name"),
        ("email", ["E-mail"], "E-mail"),
        ("email", ["emial"], "emial"),
        ("email", ["phone", "id"], None),
    ],
)
def test_closest_ignores_case_spaces_underscores_and_camel_case(name, candidates, expected):
    assert closest(name, candidates) == expected
