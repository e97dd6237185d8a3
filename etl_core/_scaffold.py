"""``etl init plugin NAME``: the skeleton of a third-party plugin package, with tests, ready to install."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _scaffold_templates as templates
from . import _scaffold_test_templates as test_templates
from ._errors import ConfigError
from ._version import __version__

if TYPE_CHECKING:
    from .registry import PluginManager

#: What a plugin package can provide.
KINDS = ("source", "transform", "sink")
#: The distribution that ships etl_core: what a plugin package depends on.
ETL_DISTRIBUTION = "etl"
#: Extra requirements of each kind's skeleton.
_REQUIREMENTS = {"source": (), "transform": (), "sink": ("httpx>=0.27",)}
#: Names YAML reads as something other than that string (``type: yes`` is True).
_YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}


@dataclasses.dataclass(frozen=True)
class PluginNames:
    """The names of a new plugin, all derived from the one given.

    Attributes:
        type: Its name in configs (``type: webhook``), also the entry point's name.
        package: Its import name (``etl_webhook``): unique, so it cannot clash in site-packages.
        distribution: Its distribution (``etl-webhook``), also the default directory.
    """

    type: str
    package: str
    distribution: str

    @classmethod
    def of(cls, name: str) -> PluginNames:
        """Derive the names from ``name`` (``webhook``, ``my-api``, ``etl-webhook``...).

        Raises:
            ValueError: ``name`` cannot make a plugin name.
        """
        type_name = re.sub(r"[-_]+", "_", name.strip().lower())
        type_name = type_name.removeprefix("etl_") or type_name
        if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", type_name) or type_name in _YAML_WORDS:
            raise ValueError(f"{name!r} cannot name a plugin: use letters, digits, - and _, starting with a letter (e.g. webhook)")
        return cls(type_name, f"etl_{type_name}", "etl-" + type_name.replace("_", "-"))


def scaffold_plugin(names: PluginNames, kind: str, directory: Path) -> list[Path]:
    """Write a plugin package providing one ``kind`` under ``directory``.

    Args:
        names: The plugin's names.
        kind: ``source``, ``transform`` or ``sink``.
        directory: Where to write it; it must not exist, or be empty.

    Returns:
        The files written, in order.

    Raises:
        ConfigError: ``directory`` exists and is not an empty directory (nothing is
            written), or a file cannot be written.
    """
    if directory.exists() and not (directory.is_dir() and not any(directory.iterdir())):
        raise ConfigError(f"{directory} already exists: give another --dir, or remove it first")
    module = f"_{kind}"
    values = {
        "type": names.type,
        "package": names.package,
        "distribution": names.distribution,
        "kind": kind,
        "Kind": kind.capitalize(),
        "Class": _class_name(names.type, kind),
        "hook": f"register_{kind}s",
        "module": module,
        "ENV": names.type.upper(),
        "dependencies": ", ".join(f'"{requirement}"' for requirement in (f"{ETL_DISTRIBUTION}>={__version__}", *_REQUIREMENTS[kind])),
    }
    values["config"] = render(templates.CONFIGS[kind], values)
    files = {
        Path("pyproject.toml"): templates.PYPROJECT,
        Path("README.md"): templates.README,
        Path("src", names.package, "__init__.py"): templates.INIT,
        Path("src", names.package, f"{module}.py"): templates.MODULES[kind],
        Path("tests", f"test_{names.type}.py"): test_templates.TESTS[kind],
    }
    written = []
    for relative, template in files.items():
        path = directory / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(template, values), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written


def _class_name(type_name: str, kind: str) -> str:
    """``webhook`` -> ``WebhookSink``; ``my_sink`` -> ``MySink``."""
    name = "".join(part.capitalize() for part in type_name.split("_"))
    return name if name.endswith(kind.capitalize()) else name + kind.capitalize()


def render(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{{key}}`` replaced by ``values[key]``.

    Raises:
        KeyError: The template names a key ``values`` lacks.
    """
    return re.sub(r"\{\{(\w+)\}\}", lambda match: values[match.group(1)], template)


def add_init_command(commands: argparse._SubParsersAction[Any], pm: PluginManager) -> None:
    """Add ``etl init plugin NAME [--kind KIND] [--dir DIR]`` to the ``etl`` command line.

    Args:
        commands: The subparsers of ``etl``.
        pm: The plugin manager, to refuse a name an installed plugin of the kind has.
    """
    init = commands.add_parser(
        "init", help="create a new plugin package, with tests", description="Create the skeleton of something new."
    )
    init.set_defaults(handler=functools.partial(_usage, init))
    what = init.add_subparsers(dest="init_what", metavar="WHAT", title="what to create")
    plugin = what.add_parser(
        "plugin",
        help="a plugin package: a source, transform or sink, with tests",
        description="Create a plugin package: pyproject.toml with the entry point, the plugin class with its "
        "register hook, tests written with etl_core.testing, and a README. Nothing is installed.",
    )
    plugin.add_argument("name", type=_names, metavar="NAME", help="the plugin's name in configs (type: NAME), e.g. webhook")
    plugin.add_argument("--kind", choices=KINDS, default="sink", help="what it provides (default: %(default)s)")
    plugin.add_argument("--dir", type=Path, metavar="DIR", help="the directory to create (default: ./etl-NAME)")
    plugin.set_defaults(handler=functools.partial(_cmd_init_plugin, pm=pm))


def _names(text: str) -> PluginNames:
    try:
        return PluginNames.of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help(sys.stderr)
    return 2


def _cmd_init_plugin(args: argparse.Namespace, pm: PluginManager) -> int:
    from .registry import Registry

    names: PluginNames = args.name
    if names.type in Registry(pm).names(args.kind):
        raise ConfigError(f"a {args.kind} named {names.type!r} is already installed (see etl plugins): choose another NAME")
    directory: Path = args.dir or Path(names.distribution)
    written = scaffold_plugin(names, args.kind, directory)
    print(f"Created the {args.kind} {names.type!r} in {directory}:")
    for path in written:
        print(f"  {path}")
    print(f"Next: cd {directory}, pip install -e '.[test]', python -m pytest, etl plugins.")
    return 0
