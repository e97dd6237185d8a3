"""JSON Schema of the config file, including every installed plugin's options."""

from __future__ import annotations

from typing import Any

from .config import PipelineModel
from .registry import Registry


def config_schema(registry: Registry) -> dict[str, Any]:
    """Return a JSON Schema (draft 2020-12) for pipeline config files.

    ``source``, ``transforms`` items and ``sink`` are a ``oneOf`` over the installed
    plugins of that kind, each selected by its ``type``.

    Args:
        registry: The installed plugins.
    """
    schema = PipelineModel.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for kind, key in (("source", "source"), ("transform", "transforms"), ("sink", "sink")):
        choices = []
        for name in registry.names(kind):  # type: ignore[arg-type]
            options = registry.get(kind, name).Options.model_json_schema()  # type: ignore[arg-type]
            defs.update(options.pop("$defs", {}))
            options.setdefault("properties", {})
            options["properties"] = {"type": {"const": name}, **options["properties"]}
            options["required"] = ["type", *options.get("required", [])]
            options["additionalProperties"] = False
            options["title"] = f"{kind} {name}"
            choices.append(options)
        union = {"oneOf": choices}
        if key == "transforms":
            schema["properties"][key] = {"type": "array", "items": union, "default": []}
        else:
            schema["properties"][key] = union
    defs.pop("PluginSection", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
