"""The names `etl init plugin` derives, and its templates."""

from __future__ import annotations

import re

import pytest

from etl_core import _scaffold_templates as templates
from etl_core import _scaffold_test_templates as test_templates
from etl_core._scaffold import PluginNames, render


@pytest.mark.parametrize(
    ("given", "names"),
    [
        ("webhook", ("webhook", "etl_webhook", "etl-webhook")),
        ("My-API", ("my_api", "etl_my_api", "etl-my-api")),
        ("etl-webhook", ("webhook", "etl_webhook", "etl-webhook")),
        ("s3__bucket", ("s3_bucket", "etl_s3_bucket", "etl-s3-bucket")),
    ],
)
def test_names_are_derived_from_the_one_given(given, names):
    assert PluginNames.of(given) == PluginNames(*names)


@pytest.mark.parametrize("given", ["", "9lives", "web hook", "_x", "x_", "yes", "Off", "null", "café"])
def test_unusable_names_are_refused(given):
    with pytest.raises(ValueError, match="cannot name a plugin"):
        PluginNames.of(given)


def test_every_placeholder_of_the_templates_is_known():
    keys = {"type", "package", "distribution", "kind", "Kind", "Class", "hook", "module", "ENV", "dependencies", "config"}
    texts = [templates.PYPROJECT, templates.INIT, templates.README, *templates.CONFIGS.values(),
             *templates.MODULES.values(), *test_templates.TESTS.values()]
    used = {key for text in texts for key in re.findall(r"\{\{(\w+)\}\}", text)}
    assert used == keys
    with pytest.raises(KeyError):
        render("{{nope}}", {})
