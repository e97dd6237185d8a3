"""Tests of the quote follower, which reads the quotes of a record as csv.reader does."""

from __future__ import annotations

import csv

from hypothesis import given, settings
from hypothesis import strategies as st

from etl_csv._quotes import MALFORMED, QUOTED, QuoteFollower

_QUOTING = st.text(alphabet='ab,"', max_size=14)


@settings(max_examples=500, deadline=None)
@given(text=_QUOTING.filter(bool), cuts=st.lists(st.integers(min_value=0, max_value=14), max_size=3))
def test_the_quote_follower_reads_a_line_as_csv_does(text, cuts):
    follower = QuoteFollower(",", '"')
    bounds = sorted({0, len(text), *(min(cut, len(text)) for cut in cuts)})
    for start, stop in zip(bounds, bounds[1:], strict=False):
        follower.feed(text[start:stop])
    try:
        row = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        if str(exc) == "unexpected end of data":  # the record goes on to the next line
            assert follower.state == QUOTED
        else:
            assert follower.state == MALFORMED
    else:
        assert follower.state not in (QUOTED, MALFORMED)
        assert follower.fields == len(row)
    assert follower.quotes == text.count('"')
