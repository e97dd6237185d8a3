"""Property tests: whatever the input, the config loader answers with data or a ConfigError."""

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl_core import ConfigError
from etl_core._yaml import load_yaml
from etl_core.config import interpolate, parse_config

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

yaml_alphabet = string.printable + "ä€\u2028"
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20,
)
keys = st.sampled_from(["pipeline", "key", "source", "transforms", "sink", "run", "output", "state", "logging", "type", "path", "workers", "fields"])
config_like = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)


@FAST
@given(st.text(alphabet=yaml_alphabet, max_size=300))
def test_random_yaml_text(text):
    try:
        load_yaml(text)
    except ConfigError as exc:
        assert str(exc)


@FAST
@given(documents)
def test_random_documents_round_trip_through_yaml(doc):
    try:
        data, _ = load_yaml(yaml.safe_dump(doc))
    except ConfigError:
        return
    assert data == doc or doc is None


@FAST
@given(config_like)
def test_random_documents_against_the_schema(registry, doc):
    try:
        parse_config(doc, {}, registry, env={}, source="<fuzz>")
    except ConfigError as exc:
        assert str(exc).startswith("<fuzz>")


@FAST
@given(st.text(alphabet="${}:-_AZaz09 ", max_size=40), st.dictionaries(st.sampled_from(["A", "B_1", "Z"]), st.text(max_size=5)))
def test_interpolation(text, env):
    try:
        result = interpolate(text, env, {})
    except ConfigError as exc:
        assert "is not set" in str(exc)
    else:
        assert isinstance(result, str)
