"""The plugin manager factory and the registry of sources, transforms and sinks."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Callable, Collection
from typing import Literal

import pluggy

from . import hookspecs
from ._errors import PluginError
from ._plugin_loading import (
    DISABLE_VARIABLE,
    PluginLoader,
    PluginManager,
    disabled_from_environment,
    register_strictly,
)
from .base import Plugin, Sink, Source, Transform

#: First-party plugins: ordinary plugin modules, registered like any other.
DEFAULT_PLUGINS: tuple[str, ...] = ("etl_csv", "etl_transform", "etl_files", "etl_cxone", "etl_http", "etl_metrics")

Kind = Literal["source", "transform", "sink"]
_BASES: dict[Kind, type[Plugin]] = {"source": Source, "transform": Transform, "sink": Sink}
_HOOKS: dict[Kind, str] = {
    "source": "register_sources",
    "transform": "register_transforms",
    "sink": "register_sinks",
}


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    extra_plugins: tuple[object, ...] = (),
    disabled: Collection[str] | None = None,
    report: Callable[[str], None] | None = None,
) -> PluginManager:
    """Create a plugin manager with the built-in plugins and installed third-party ones.

    A built-in or installed plugin that fails to load (its import raises, a hook does not
    match its specification, a ``register_*`` hook raises or returns something wrong) is
    skipped: it is listed in ``pm.broken`` with the reason, and ``report`` is told.

    Args:
        load_entrypoints: Also load plugins from the ``etl`` entry-point group.
        extra_plugins: Plugin objects (modules, classes) to register as well, e.g. in tests.
            They are never skipped or disabled: their mistakes raise.
        disabled: Names of plugins not to load: built-in module names, entry-point names
            or distribution names (default: those in ``ETL_DISABLE_PLUGINS``).
        report: Called with a one-line warning for each plugin skipped.

    Returns:
        A plugin manager whose hook implementations have been checked against the specs.

    Raises:
        PluginError: A plugin of ``extra_plugins`` implements a hook wrongly, or claims a
            name already taken.
    """
    pm = PluginManager(hookspecs.PROJECT_NAME, report=report)
    pm.add_hookspecs(hookspecs)
    loader = PluginLoader(pm, disabled_from_environment() if disabled is None else disabled)
    for module_name in DEFAULT_PLUGINS:
        loader.load_module(module_name)
    for plugin in extra_plugins:
        register_strictly(pm, plugin)
    if load_entrypoints:
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
            loader.load_entry_point(ep)
        if report is not None and (unmatched := loader.unmatched_names()):
            report(f"{DISABLE_VARIABLE} names no installed plugin: {', '.join(unmatched)}")
    loader.check_hooks()
    # Call the register_* hooks once now: a plugin that fails there is skipped before
    # its commands are added or a config is read.
    Registry(pm)
    return pm


@dataclasses.dataclass(frozen=True, slots=True)
class PluginInfo:
    """One registered plugin class, as listed by ``etl plugins``."""

    kind: Kind
    name: str
    cls: type[Plugin]
    provider: str
    package: str
    version: str


class Registry:
    """Sources, transforms and sinks by name, collected from a plugin manager.

    A built-in or installed plugin whose ``register_*`` hooks fail (raise, return
    something other than a list of the right classes, or claim a name already taken) is
    switched off (see :func:`make_plugin_manager`): none of its classes are added.

    Args:
        pm: The plugin manager, from :func:`make_plugin_manager`.

    Raises:
        PluginError: A plugin given in code (``extra_plugins``) fails that way.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._by_kind: dict[Kind, dict[str, PluginInfo]] = {kind: {} for kind in _BASES}
        for provider, plugin in pm.list_name_plugin():
            if plugin is not None:  # None: a name pluggy blocks
                self._add_plugin(provider, plugin)

    def _add_plugin(self, provider: str, plugin: object) -> None:
        """Add the classes of one plugin: all of them, or none if one is wrong."""
        dist = getattr(self.pm, "distributions", {}).get(provider)
        found: list[PluginInfo] = []
        provides: dict[str, frozenset[str] | None] = {}
        problem: PluginError | None = None
        for kind, hook_name in _HOOKS.items():
            impls = [impl for impl in getattr(self.pm.hook, hook_name).get_hookimpls() if impl.plugin is plugin]
            try:
                infos = [info for impl in impls for info in self._infos(kind, provider, plugin, impl.function, dist)]
            except PluginError as exc:
                provides[kind] = None
                problem = problem or exc
                continue
            provides[kind] = frozenset(info.name for info in infos)
            found += infos
        problem = problem or self._clash(found)
        if problem is None:
            for info in found:
                self._by_kind[info.kind][info.name] = info
            if isinstance(self.pm, PluginManager):
                self.pm.remember_provides(provider, provides)
        elif isinstance(self.pm, PluginManager) and self.pm.isolates(provider):
            self.pm.switch_off(provider, str(problem), provides)
        else:
            raise PluginError(f"plugin {provider!r}: {problem}") from problem.__cause__

    def _infos(
        self, kind: Kind, provider: str, plugin: object, hook: Callable[[], object], dist: tuple[str, str] | None
    ) -> list[PluginInfo]:
        hook_name, base = _HOOKS[kind], _BASES[kind]
        try:
            classes = hook()
        except Exception as exc:  # any failure of plugin code
            raise PluginError(f"{hook_name}() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(classes, (list, tuple)):
            raise PluginError(f"{hook_name}() must return a list of {base.__name__} classes")
        infos = []
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(f"{hook_name}() returned {cls!r}, not a {base.__name__} subclass")
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"{cls.__qualname__} has no 'name'")
            infos.append(PluginInfo(kind, name, cls, provider, *_package_of(plugin, dist)))
        return infos

    def _clash(self, found: list[PluginInfo]) -> PluginError | None:
        """A name of ``found`` that is already taken (by another plugin, or twice by this one)."""
        claimed: dict[tuple[Kind, str], PluginInfo] = {}
        for info in found:
            existing = self._by_kind[info.kind].get(info.name) or claimed.get((info.kind, info.name))
            if existing is not None:
                return PluginError(
                    f"{info.kind} name {info.name!r} is claimed twice: by plugin {existing.provider!r} "
                    f"({existing.cls.__module__}.{existing.cls.__qualname__}) and by plugin {info.provider!r} "
                    f"({info.cls.__module__}.{info.cls.__qualname__})"
                )
            claimed[info.kind, info.name] = info
        return None

    def get(self, kind: Kind, name: str) -> type[Plugin]:
        """Return the plugin class registered under ``name``.

        Raises:
            PluginError: No plugin of that kind has that name; the message lists the known ones.
        """
        try:
            return self._by_kind[kind][name].cls
        except KeyError:
            known = ", ".join(sorted(self._by_kind[kind])) or "none"
            hint = self.pm.unknown_type_hint(kind, name) if isinstance(self.pm, PluginManager) else ""
            raise PluginError(f"unknown {kind} type {name!r} (installed: {known}){hint}") from None

    def names(self, kind: Kind) -> list[str]:
        """Return the registered names of one kind, sorted."""
        return sorted(self._by_kind[kind])

    def infos(self) -> list[PluginInfo]:
        """Return every registered plugin class, sorted by kind and name."""
        return [info for kind in _BASES for _, info in sorted(self._by_kind[kind].items())]


def _package_of(plugin: object, dist: tuple[str, str] | None) -> tuple[str, str]:
    if dist is not None:
        return dist
    module = getattr(plugin, "__name__", type(plugin).__module__)
    top = module.split(".")[0]
    for candidate in (top, "etl"):
        try:
            return candidate, importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return top, "unknown"
