"""Loading plugins one by one, so that a broken plugin is skipped instead of stopping ``etl``.

A plugin that is built in or installed (an entry point) is *isolated*: if it fails to
import, has a hook that does not match its specification, or raises in a ``register_*``
hook, it is switched off (unregistered), reported once, and remembered as broken, with
the reason. Plugins given in code (``extra_plugins``: tests, the test kit) are not
isolated: their mistakes raise :class:`~etl_core.PluginError`, as a test wants.

``ETL_DISABLE_PLUGINS`` names plugins that are not imported at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import os
import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from ._errors import PluginError
from ._version import __version__

if TYPE_CHECKING:
    from ._commands import CommandLine

#: The environment variable naming plugins to switch off, separated by commas.
DISABLE_VARIABLE = "ETL_DISABLE_PLUGINS"
#: The package and version shown for the built-in plugins.
_BUILT_IN = ("etl", __version__)

#: Names a plugin registers, by kind (``source``, ``transform``, ``sink``); ``None``
#: for a kind it may register but did not say (its hook raised, or it never ran).
Provides = Mapping[str, frozenset[str] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class BrokenPlugin:
    """A plugin that failed to load and was skipped.

    Attributes:
        name: The plugin's name: the entry point's, or the built-in module's.
        package: The distribution that installed it.
        version: That distribution's version.
        reason: What went wrong, on one line (e.g. ``ModuleNotFoundError: No module named 'x'``).
        provides: What it registers, where known; ``None``: nothing is known (it never loaded).
    """

    name: str
    package: str
    version: str
    reason: str
    provides: Provides | None = None

    def may_provide(self, kind: str, type_name: str) -> bool | None:
        """Whether the plugin provides ``type_name`` of ``kind``: True, False, or None (may)."""
        names = None if self.provides is None else self.provides.get(kind, frozenset())
        return None if names is None else type_name in names

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.package} {self.version})"


@dataclasses.dataclass(frozen=True, slots=True)
class DisabledPlugin:
    """A plugin switched off by ``ETL_DISABLE_PLUGINS``: it was not imported."""

    name: str
    package: str
    version: str


class PluginManager(pluggy.PluginManager):
    """A pluggy plugin manager that remembers where each plugin came from and which were skipped.

    Args:
        project_name: The pluggy project name (also the entry-point group).
        report: Called with a one-line warning when a plugin is skipped (``None``: silent;
            the plugins stay listed in :attr:`broken`).
    """

    def __init__(self, project_name: str, *, report: Callable[[str], None] | None = None) -> None:
        super().__init__(project_name)
        #: plugin name -> (distribution name, version), for entry-point plugins.
        self.distributions: dict[str, tuple[str, str]] = {}
        #: The plugins that failed to load, in the order they did.
        self.broken: list[BrokenPlugin] = []
        #: The plugins ``ETL_DISABLE_PLUGINS`` switched off.
        self.disabled: list[DisabledPlugin] = []
        self._report = report
        self._isolated: set[str] = set()
        self._provides: dict[str, Provides] = {}

    def isolates(self, name: str | None) -> bool:
        """Whether a failure of the plugin ``name`` skips it (built in or installed) instead of raising."""
        return name in self._isolated

    def remember_provides(self, name: str, provides: Provides) -> None:
        """Note what the plugin ``name`` registers, to name it if it breaks later (``register_commands``)."""
        self._provides[name] = provides

    def register_isolated(self, plugin: object, name: str) -> None:
        """Register a built-in or installed plugin: if a hook does not match its specification, skip it."""
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self.switch_off(name, f"a hook does not match its specification: {exc}")
            return
        self._isolated.add(name)

    def switch_off(self, name: str, reason: str, provides: Provides | None = None, *, package: tuple[str, str] | None = None) -> None:
        """Unregister a plugin that failed, remember it as broken and report it.

        Args:
            name: The plugin's name.
            reason: What went wrong.
            provides: What it registers, where known (default: what it registered before).
            package: Its distribution and version (default: as remembered, else built in).
        """
        if self.get_plugin(name) is not None:
            self.unregister(name=name)
        self._isolated.discard(name)
        package = package or self.distributions.get(name, _BUILT_IN)
        self.skip(BrokenPlugin(name, *package, _one_line(reason), provides or self._provides.get(name)))

    def skip(self, broken: BrokenPlugin, *, off_switch: str | None = None) -> None:
        """Remember a plugin that could not be registered, and report it.

        Args:
            broken: The plugin and why.
            off_switch: The name that switches it off in the warning (default: the plugin's).
        """
        self.broken.append(broken)
        if self._report is not None:
            self._report(
                f"{broken} failed to load and was skipped: {broken.reason} "
                f"({DISABLE_VARIABLE}={off_switch or broken.name} switches it off)"
            )

    def unknown_type_hint(self, kind: str, type_name: str) -> str:
        """What to add to "unknown ``kind`` type": the skipped plugins that may have provided it."""
        hints = []
        for broken in self.broken:
            provides = broken.may_provide(kind, type_name)
            if provides:
                hints.append(f"{kind} {type_name!r} comes from {broken}, which failed to load: {broken.reason}")
            elif provides is None:
                hints.append(f"{broken} failed to load and may provide it: {broken.reason}")
        if self.disabled:
            hints.append(f"plugins switched off by {DISABLE_VARIABLE}: {', '.join(plugin.name for plugin in self.disabled)}")
        return "".join(f"; {hint}" for hint in hints)


class PluginLoader:
    """Registers the built-in and installed plugins one by one, skipping the disabled and the broken.

    Args:
        pm: The plugin manager to register them with.
        disabled: Plugin or distribution names to switch off (compared as
            :func:`normalized_name`).
    """

    def __init__(self, pm: PluginManager, disabled: Collection[str]) -> None:
        self.pm = pm
        #: normalized name -> the name as given
        self._disabled = {normalized_name(name): name.strip() for name in disabled if name.strip()}
        self._matched: set[str] = set()

    def load_module(self, module_name: str) -> None:
        """Import and register a built-in plugin module, unless it is disabled or fails."""
        if self._is_disabled(module_name):
            self.pm.disabled.append(DisabledPlugin(module_name, *_BUILT_IN))
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises, it is skipped
            self.pm.switch_off(module_name, _exception(exc))
            return
        self.pm.register_isolated(module, module_name)

    def load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        """Load and register an installed plugin, unless it is disabled, its name is taken, or it fails."""
        package = (ep.dist.name, ep.dist.version) if ep.dist is not None else ("unknown distribution", "unknown")
        if self._is_disabled(ep.name, package[0]):
            self.pm.disabled.append(DisabledPlugin(ep.name, *package))
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises, it is skipped
            self.pm.switch_off(ep.name, _exception(exc), package=package)
            return
        if self.pm.is_registered(plugin):
            # The same module given in code (e.g. by its own tests) or by another entry point.
            self.pm.distributions.setdefault(str(self.pm.get_name(plugin)), package)
            return
        if self.pm.get_plugin(ep.name) is not None:
            owner = self.pm.distributions.get(ep.name, ("etl (built in)",))[0]
            reason = f"its name is already taken by {owner}"
            self.pm.skip(BrokenPlugin(ep.name, *package, reason), off_switch=package[0])
            return
        self.pm.distributions[ep.name] = package
        self.pm.register_isolated(plugin, ep.name)

    def check_hooks(self) -> None:
        """Check every hook implementation against the specifications; switch off isolated plugins that fail.

        Raises:
            PluginError: A plugin given in code implements a hook that does not exist.
        """
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin)
                if not self.pm.isolates(name):
                    raise PluginError(f"plugin {name!r} implements an unknown hook: {exc}") from exc
                self.pm.switch_off(str(name), str(exc))

    def unmatched_names(self) -> list[str]:
        """The names in ``ETL_DISABLE_PLUGINS`` that matched no plugin (a typo, or an uninstalled one)."""
        return sorted(given for name, given in self._disabled.items() if name not in self._matched)

    def _is_disabled(self, *names: str) -> bool:
        matched = self._disabled.keys() & {normalized_name(name) for name in names}
        self._matched |= matched
        return bool(matched)


def register_strictly(pm: pluggy.PluginManager, plugin: object) -> None:
    """Register a plugin given in code; a mistake in it is an error, not a skipped plugin.

    Raises:
        PluginError: A hook does not match its specification, or the name is taken.
    """
    if pm.is_registered(plugin):  # e.g. a built-in module, passed again by a test
        return
    try:
        pm.register(plugin)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_canonical_name(plugin)!r} has a hook that does not match its spec: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"plugin name clash: {exc}") from exc


def disabled_from_environment() -> list[str]:
    """The plugin names in ``ETL_DISABLE_PLUGINS`` (comma-separated)."""
    return [name.strip() for name in os.environ.get(DISABLE_VARIABLE, "").split(",") if name.strip()]


def normalized_name(name: str) -> str:
    """``name`` as compared for ``ETL_DISABLE_PLUGINS``: case and runs of ``-``, ``_``, ``.`` do not matter."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def add_plugin_commands(pm: PluginManager, cli: CommandLine, subparsers: Collection[argparse._SubParsersAction[Any]]) -> None:
    """Call every plugin's ``register_commands``; an isolated plugin that fails is switched off.

    The commands and sandboxes a failing plugin added before it raised are removed.

    Args:
        pm: The plugin manager.
        cli: The command line handed to the hooks.
        subparsers: Where plugins add commands (``etl``'s and ``etl sandbox``'s).

    Raises:
        PluginError: The ``register_commands`` of a plugin given in code raised.
    """
    for impl in pm.hook.register_commands.get_hookimpls():
        before = [set(group.choices) for group in subparsers]
        try:
            # An implementation may leave out the argument, like any hook implementation.
            impl.function(**{name: cli for name in impl.argnames})
        except Exception as exc:  # any failure of plugin code
            name = pm.get_name(impl.plugin)
            reason = f"register_commands() raised {_exception(exc)}"
            if not pm.isolates(name):
                raise PluginError(f"plugin {name!r}: {reason}") from exc
            for group, names in zip(subparsers, before, strict=True):
                _remove_parsers(group, set(group.choices) - names)
            pm.switch_off(str(name), reason)


def log_skipped_plugins(pm: pluggy.PluginManager) -> None:
    """Log a ``plugin_broken`` event for each plugin that failed to load, ``plugin_disabled`` for each switched off."""
    from .logging import get_logger

    log = get_logger()
    for broken in getattr(pm, "broken", ()):
        log.warning("plugin_broken", plugin=broken.name, package=broken.package, version=broken.version, reason=broken.reason)
    for disabled in getattr(pm, "disabled", ()):
        log.info("plugin_disabled", plugin=disabled.name, package=disabled.package, version=disabled.version)


def _remove_parsers(group: argparse._SubParsersAction[Any], names: set[str]) -> None:
    for name in names:
        del group.choices[name]
    # The help listing keeps its own entries (argparse has no public way to remove one).
    group._choices_actions[:] = [action for action in group._choices_actions if action.dest not in names]


def _exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
