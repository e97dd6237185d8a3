"""Turning plugin classes into a plugin object to register."""

from __future__ import annotations

from .. import hookspecs
from ..base import (
    Plugin,
    Sink,
    Source,
    Transform,
)

#: The kinds of plugin class.
KINDS: tuple[type[Plugin], ...] = (Source, Transform, Sink)


# -- registering plugins ---------------------------------------------------------------


def plugin_of(*classes: type[Plugin]) -> object:
    """Return a plugin object that registers the given source, transform and sink classes.

    Args:
        *classes: Subclasses of :class:`~etl_core.Source`, :class:`~etl_core.Transform`
            or :class:`~etl_core.Sink`, in any mix.

    Returns:
        An object with the matching ``register_*`` hooks, to pass in ``plugins=``
        (or to :func:`etl_core.registry.make_plugin_manager`'s ``extra_plugins``).

    Raises:
        TypeError: A class is not a plugin class.
    """
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, KINDS)):
            raise TypeError(f"{cls!r} is not a Source, Transform or Sink subclass")
    return _ClassesPlugin(classes)


class _ClassesPlugin:
    """The plugin object made by :func:`plugin_of`."""

    def __init__(self, classes: tuple[type[Plugin], ...]) -> None:
        self.classes = classes

    def _of(self, base: type[Plugin]) -> list[type[Plugin]]:
        return [cls for cls in self.classes if issubclass(cls, base)]

    @hookspecs.hookimpl
    def register_sources(self) -> list[type[Plugin]]:
        return self._of(Source)

    @hookspecs.hookimpl
    def register_transforms(self) -> list[type[Plugin]]:
        return self._of(Transform)

    @hookspecs.hookimpl
    def register_sinks(self) -> list[type[Plugin]]:
        return self._of(Sink)

    def __repr__(self) -> str:
        return f"<plugin of {', '.join(cls.__qualname__ for cls in self.classes)}>"
