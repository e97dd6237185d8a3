"""Safe YAML loading that remembers the line of every key, for error messages."""

from __future__ import annotations

from typing import Any

import yaml

from ._errors import ConfigError

#: Upper bound on nodes visited while reading a document, aliases expanded. A config
#: is a few hundred nodes; "billion laughs" alias bombs are millions. The nodes are counted
#: as they are composed too, which also bounds the time a large document costs (PyYAML
#: composes some 10,000 nodes a second).
MAX_NODES = 10_000
#: Upper bound on the size of a config file, in bytes. A config is a few kilobytes.
MAX_BYTES = 1 << 20

Path = tuple[str | int, ...]

# What a constructor of the standard tags raises on a value it cannot read (int("x"),
# a bool table lookup, a timestamp that does not match). RecursionError is left alone.
_VALUE_ERRORS = (ArithmeticError, AttributeError, LookupError, TypeError, ValueError)


class _TooManyNodes(Exception):
    """The document has more than :data:`MAX_NODES` nodes; ``line`` is where it went over."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with two guards.

    Nodes are counted as they are composed, so a document too large to be a config is
    refused before it is built whole; and a value that its tag cannot construct
    (``!!int abc``) is a YAML error at its line, never an exception quoting the value.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._composed = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self._composed += 1
        if self._composed > MAX_NODES:
            raise _TooManyNodes(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except _VALUE_ERRORS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(None, None, f"not a valid {tag} value", node.start_mark) from None


def load_yaml(text: str, *, source: str | None = None) -> tuple[Any, dict[Path, int]]:
    """Parse one YAML document.

    Args:
        text: The document.
        source: The file name, for error messages.

    Returns:
        The data, and a map from key paths (``("sink", "workers")``) to 1-based lines.

    Raises:
        ConfigError: The text is not valid YAML, holds several documents, has a value
            its tag cannot construct, or has (aliases expanded) more than
            :data:`MAX_NODES` nodes. No message quotes a value.
    """
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # control characters, caught while reading the stream
        character = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(f"invalid YAML: {exc.reason} (character #x{character:04x} at offset {exc.position})", source=source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file is empty", source=source)
        lines: dict[Path, int] = {}
        _index(node, (), lines, [0])
        return loader.construct_document(node), lines
    except _TooManyNodes as exc:
        raise ConfigError(
            f"the document has more than {MAX_NODES:,} nodes (aliases expanded); refusing to load it",
            line=exc.line,
            source=source,
        ) from None
    except RecursionError:
        raise ConfigError("the document nests too deeply (or an alias refers to itself); refusing to load it", source=source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"invalid YAML: {problem}", line=line, source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {' '.join(str(exc).split())}", source=source) from None
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: Path, lines: dict[Path, int], visited: list[int]) -> None:
    visited[0] += 1
    if visited[0] > MAX_NODES:
        raise _TooManyNodes(node.start_mark.line + 1)
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark.line)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _index(value_node, path + (key,), lines, visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, path + (index,), lines, visited)
