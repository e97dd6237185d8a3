import pytest

from etl_core import ConfigError
from etl_core._yaml import MAX_NODES, load_yaml


def test_lines_of_keys_and_items():
    data, lines = load_yaml("a: 1\nb:\n  c:\n    - x\n    - y\n  d: z\n")
    assert data == {"a": 1, "b": {"c": ["x", "y"], "d": "z"}}
    assert lines[("a",)] == 1
    assert lines[("b", "c")] == 3
    assert lines[("b", "c", 1)] == 5
    assert lines[("b", "d")] == 6


def test_syntax_error_names_line():
    with pytest.raises(ConfigError) as info:
        load_yaml("a: 1\nb: [1, 2\nc: 3\n", source="p.yaml")
    assert info.value.line == 3
    assert str(info.value).startswith("p.yaml:3: invalid YAML")


def test_empty_document():
    with pytest.raises(ConfigError, match="empty"):
        load_yaml("# nothing\n")


def test_several_documents_refused():
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml("a: 1\n---\nb: 2\n")


def test_alias_bomb_refused():
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefg"):
        prev = "abcdefg"[i]
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES:,} nodes") as info:
        load_yaml("\n".join(levels), source="bomb.yaml")
    assert str(info.value).startswith("bomb.yaml:")


def test_a_large_document_is_refused_before_it_is_composed_whole():
    # The nodes are counted as they are composed: the error is met before the syntax
    # error at the end of the document is ever reached.
    text = "items:\n" + "  - x\n" * (2 * MAX_NODES) + "broken: [\n"
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES:,} nodes") as info:
        load_yaml(text, source="big.yaml")
    # The mapping, its key and the sequence come first: item n is node n + 3, on line n + 1.
    assert str(info.value).startswith(f"big.yaml:{MAX_NODES - 1}: ")


@pytest.mark.parametrize("tag", ["!!int", "!!float", "!!bool", "!!timestamp"])
def test_a_value_its_tag_cannot_read_is_an_error_at_its_line(tag):
    with pytest.raises(ConfigError) as info:
        load_yaml(f"pipeline: demo\nsink:\n  client_secret: {tag} s3cr3t-value\n", source="p.yaml")
    assert str(info.value) == f"p.yaml:3: invalid YAML: not a valid {tag} value"


def test_values_of_standard_tags_are_still_read():
    data, _ = load_yaml("a: !!int '12'\nb: !!float '1.5'\nc: !!bool 'yes'\nd: !!str 3\n")
    assert data == {"a": 12, "b": 1.5, "c": True, "d": "3"}


def test_python_tags_are_not_constructed():
    with pytest.raises(ConfigError):
        load_yaml("a: !!python/object/apply:os.system ['true']\n")


@pytest.mark.parametrize("text", ["source: &a {type: csv, path: [*a]}", "[" * 3000], ids=["recursive-alias", "deep"])
def test_recursive_or_deep_documents_refused(text):
    with pytest.raises(ConfigError, match="nests too deeply"):
        load_yaml(text)
