"""First-party transforms: ``map`` (rename, select, normalise, add fields) and ``validate`` (field rules)."""

from __future__ import annotations

from etl_core import Transform, hookimpl

from ._map import MapOptions, MapTransform
from ._validate import ValidateOptions, ValidateTransform

__all__ = ["MapOptions", "MapTransform", "ValidateOptions", "ValidateTransform", "register_transforms"]


@hookimpl
def register_transforms() -> list[type[Transform]]:
    return [MapTransform, ValidateTransform]
