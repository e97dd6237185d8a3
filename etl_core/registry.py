"""The plugin manager factory and the registry of sources, transforms and sinks."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
from typing import Literal

import pluggy

from . import hookspecs
from ._errors import PluginError
from .base import Plugin, Sink, Source, Transform

#: First-party plugins: ordinary plugin modules, registered like any other.
DEFAULT_PLUGINS: tuple[str, ...] = ("etl_csv", "etl_transform", "etl_files", "etl_cxone", "etl_metrics")

Kind = Literal["source", "transform", "sink"]
_BASES: dict[Kind, type[Plugin]] = {"source": Source, "transform": Transform, "sink": Sink}
_HOOKS: dict[Kind, str] = {
    "source": "register_sources",
    "transform": "register_transforms",
    "sink": "register_sinks",
}


class PluginManager(pluggy.PluginManager):
    """A pluggy plugin manager that remembers which distribution provided each plugin."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        #: plugin name -> (distribution name, version), for entry-point plugins.
        self.distributions: dict[str, tuple[str, str]] = {}


def make_plugin_manager(*, load_entrypoints: bool = True, extra_plugins: tuple[object, ...] = ()) -> PluginManager:
    """Create a plugin manager with the built-in plugins and installed third-party ones.

    Args:
        load_entrypoints: Also load plugins from the ``etl`` entry-point group.
        extra_plugins: Plugin objects (modules, classes) to register as well, e.g. in tests.

    Returns:
        A plugin manager whose hook implementations have been checked against the specs.

    Raises:
        PluginError: A plugin fails to import or implements a hook with a wrong signature.
    """
    pm = PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        _register(pm, importlib.import_module(module_name), module_name)
    for plugin in extra_plugins:
        _register(pm, plugin, None)
    if load_entrypoints:
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
            dist = ep.dist.name if ep.dist else "unknown distribution"
            if pm.get_plugin(ep.name) is not None:
                owner = pm.distributions.get(ep.name, ("etl (built in)",))[0]
                raise PluginError(f"plugin name {ep.name!r} is claimed twice: by {owner} and by {dist}")
            try:
                plugin = ep.load()
            except Exception as exc:  # any import failure of third-party code
                raise PluginError(f"plugin {ep.name!r} from {dist} failed to load: {type(exc).__name__}: {exc}") from exc
            _register(pm, plugin, ep.name, dist)
            if ep.dist is not None:
                pm.distributions[ep.name] = (ep.dist.name, ep.dist.version)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_name(exc.plugin)!r} implements an unknown hook: {exc}") from exc
    return pm


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None, dist: str | None = None) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        owner = f"{name!r}" + (f" from {dist}" if dist else "")
        raise PluginError(f"plugin {owner} has a hook that does not match its spec: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"plugin name clash: {exc}") from exc


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

    Args:
        pm: The plugin manager, from :func:`make_plugin_manager`.

    Raises:
        PluginError: Two plugins claim the same name, or a hook returns something
            other than a list of the right plugin classes.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._by_kind: dict[Kind, dict[str, PluginInfo]] = {kind: {} for kind in _BASES}
        dists = getattr(pm, "distributions", {})
        for kind, hook_name in _HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                provider = pm.get_name(impl.plugin) or repr(impl.plugin)
                try:
                    classes = impl.function()
                except Exception as exc:
                    raise PluginError(f"plugin {provider!r}: {hook_name}() raised {type(exc).__name__}: {exc}") from exc
                self._add(kind, provider, impl.plugin, classes, dists.get(provider))

    def _add(self, kind: Kind, provider: str, plugin: object, classes: object, dist: tuple[str, str] | None) -> None:
        base = _BASES[kind]
        if not isinstance(classes, (list, tuple)):
            raise PluginError(f"plugin {provider!r}: {_HOOKS[kind]}() must return a list of {base.__name__} classes")
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(f"plugin {provider!r}: {_HOOKS[kind]}() returned {cls!r}, not a {base.__name__} subclass")
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {provider!r}: {cls.__qualname__} has no 'name'")
            existing = self._by_kind[kind].get(name)
            if existing is not None:
                raise PluginError(
                    f"{kind} name {name!r} is claimed twice: by plugin {existing.provider!r} "
                    f"({existing.cls.__module__}.{existing.cls.__qualname__}) and by plugin {provider!r} "
                    f"({cls.__module__}.{cls.__qualname__})"
                )
            package, version = _package_of(plugin, dist)
            self._by_kind[kind][name] = PluginInfo(kind, name, cls, provider, package, version)

    def get(self, kind: Kind, name: str) -> type[Plugin]:
        """Return the plugin class registered under ``name``.

        Raises:
            PluginError: No plugin of that kind has that name; the message lists the known ones.
        """
        try:
            return self._by_kind[kind][name].cls
        except KeyError:
            known = ", ".join(sorted(self._by_kind[kind])) or "none"
            raise PluginError(f"unknown {kind} type {name!r} (installed: {known})") from None

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
