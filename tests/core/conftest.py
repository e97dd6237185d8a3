"""Fixtures of the core tests: third-party plugins installed for one test."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: install_plugin(module, code, *, entry_point=None, distribution=None, version="1.0")
InstallPlugin = Callable[..., None]


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallPlugin]:
    """Install a plugin for this test: its module and a ``*.dist-info`` with its entry point, on ``sys.path``.

    That is what ``pip install`` leaves in site-packages, so ``importlib.metadata`` finds
    the entry point as it finds any installed distribution's. The module is imported
    only when the plugin is loaded, and forgotten after the test.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def install(
        module: str, code: str, *, entry_point: str | None = None, distribution: str | None = None, version: str = "1.0"
    ) -> None:
        distribution = distribution or module.replace("_", "-")
        (site / f"{module}.py").write_text(textwrap.dedent(code), encoding="utf-8")
        info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[etl]\n{entry_point or module} = {module}\n", encoding="utf-8")
        modules.append(module)
        importlib.invalidate_caches()

    yield install
    for module in modules:
        sys.modules.pop(module, None)
