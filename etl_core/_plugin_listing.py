"""What ``etl plugins`` lists: every plugin class, and the plugins that were skipped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._plugin_loading import DISABLE_VARIABLE, BrokenPlugin, DisabledPlugin, PluginManager
from .registry import Registry

Row = dict[str, Any]


def plugin_rows(pm: PluginManager) -> list[Row]:
    """One row per plugin class (status ``ok``), then one per broken or disabled plugin.

    Every row has the same keys: ``kind``, ``name`` and ``description`` of the class
    (``None``, ``None`` and ``""`` for a skipped plugin, whose classes are unknown),
    ``package`` and ``version`` of its distribution, ``plugin`` (the registering plugin's
    name), ``status`` (``ok``, ``broken`` or ``disabled``) and ``reason`` (``None`` when ok).
    """
    rows: list[Row] = [
        {
            "kind": info.kind,
            "name": info.name,
            "package": info.package,
            "version": info.version,
            "plugin": info.provider,
            "description": (info.cls.__doc__ or "").strip().split("\n", 1)[0],
            "status": "ok",
            "reason": None,
        }
        for info in Registry(pm).infos()
    ]
    skipped: list[tuple[BrokenPlugin | DisabledPlugin, str, str]] = [(plugin, "broken", plugin.reason) for plugin in pm.broken]
    skipped += [(plugin, "disabled", f"switched off by {DISABLE_VARIABLE}") for plugin in pm.disabled]
    for plugin, status, reason in skipped:
        rows.append(
            {
                "kind": None,
                "name": None,
                "package": plugin.package,
                "version": plugin.version,
                "plugin": plugin.name,
                "description": "",
                "status": status,
                "reason": reason,
            }
        )
    return rows


def plugin_table(rows: Sequence[Row]) -> str:
    """The rows as text: a table of the plugin classes, then one of the skipped plugins if any."""
    lines = _table([row for row in rows if row["status"] == "ok"], ("kind", "name", "package", "version", "description"))
    skipped = [row for row in rows if row["status"] != "ok"]
    if skipped:
        lines += ["", *_table(skipped, ("plugin", "package", "version", "status", "reason"))]
    return "\n".join(lines)


def _table(rows: Sequence[Row], columns: Sequence[str]) -> list[str]:
    """Left-aligned columns under upper-case headings; the last column is not padded."""
    *padded, last = columns
    widths = {key: max([len(key), *(len(str(row[key])) for row in rows)]) for key in padded}
    lines = ["  ".join([*(key.upper().ljust(widths[key]) for key in padded), last.upper()])]
    lines += ["  ".join([*(str(row[key]).ljust(widths[key]) for key in padded), str(row[last])]) for row in rows]
    return lines
