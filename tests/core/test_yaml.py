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
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES:,} nodes"):
        load_yaml("\n".join(levels))


def test_python_tags_are_not_constructed():
    with pytest.raises(ConfigError):
        load_yaml("a: !!python/object/apply:os.system ['true']\n")


@pytest.mark.parametrize("text", ["source: &a {type: csv, path: [*a]}", "[" * 3000], ids=["recursive-alias", "deep"])
def test_recursive_or_deep_documents_refused(text):
    with pytest.raises(ConfigError, match="nests too deeply"):
        load_yaml(text)
