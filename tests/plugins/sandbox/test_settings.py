"""The sandbox's settings model."""

from __future__ import annotations

import pytest

from etl_cxone.sandbox import SandboxSettings
from etl_cxone.sandbox._settings import apply_changes


def test_settings_are_validated():
    with pytest.raises(ValueError, match="retry_after"):
        SandboxSettings(retry_after="minutes")
    with pytest.raises(ValueError, match="error_rate"):
        SandboxSettings(error_rate=1.5)
    with pytest.raises(ValueError, match="rate_limit"):
        SandboxSettings(rate_limit=0)


def test_assignments_are_validated():
    s = SandboxSettings()
    s.rate_limit = 5
    assert s.rate_limit == 5.0
    with pytest.raises(ValueError, match="rate_limit"):
        s.rate_limit = 0
    with pytest.raises(ValueError, match="nope"):
        s.nope = 1
    assert s.rate_limit == 5.0


def test_changes_are_strict_json_values_and_all_or_nothing():
    s = SandboxSettings()
    errors = apply_changes(s, {"latency": 0.5, "rate_limit": "50", "error_rate": 2, "port": 1, "nope": 1})
    assert errors == {
        "rate_limit": "Input should be a valid number",
        "error_rate": "Input should be less than or equal to 1",
        "port": "cannot be changed while running",
        "nope": "unknown setting",
    }
    assert s == SandboxSettings()  # nothing applied, not even latency
    assert apply_changes(s, {"latency": float("nan")}) == {"latency": "Input should be a finite number"}
    assert apply_changes(s, {"random_seed": True}) == {"random_seed": "Input should be a valid integer"}


def test_changes_are_applied_to_the_live_object():
    s = SandboxSettings()
    assert apply_changes(s, {"rate_limit": 50, "extra_ids": ["a", "b"], "random_seed": None}) == {}
    assert s.rate_limit == 50.0
    assert s.extra_ids == ("a", "b")
    assert s.model_dump(mode="json")["extra_ids"] == ["a", "b"]
