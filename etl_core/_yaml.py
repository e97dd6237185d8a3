"""Safe YAML loading that remembers the line of every key, for error messages."""

from __future__ import annotations

from typing import Any

import yaml

from ._errors import ConfigError

#: Upper bound on nodes visited while reading a document, aliases expanded. A config
#: is a few hundred nodes; "billion laughs" alias bombs are millions.
MAX_NODES = 100_000

Path = tuple[str | int, ...]


def load_yaml(text: str, *, source: str | None = None) -> tuple[Any, dict[Path, int]]:
    """Parse one YAML document.

    Args:
        text: The document.
        source: The file name, for error messages.

    Returns:
        The data, and a map from key paths (``("sink", "workers")``) to 1-based lines.

    Raises:
        ConfigError: The text is not valid YAML, holds several documents, or expands
            (through aliases) beyond :data:`MAX_NODES` nodes.
    """
    try:
        loader = yaml.SafeLoader(text)
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
        raise ConfigError(
            f"the document expands to more than {MAX_NODES:,} nodes (aliases included); refusing to load it",
            line=node.start_mark.line + 1,
        )
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark.line)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _index(value_node, path + (key,), lines, visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, path + (index,), lines, visited)
