"""Running a pipeline described by a dict, validated like a config file."""

from __future__ import annotations

import copy
import functools
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

import trio

from ..base import (
    Sink,
    Source,
)
from ..config import parse_config
from ..pipeline import RunOptions, RunResult, run_pipeline
from ..registry import Registry, make_plugin_manager
from ._plugins import plugin_of

_P = ParamSpec("_P")
_T = TypeVar("_T")

# -- running pipelines -----------------------------------------------------------------


async def run_pipeline_from_dict(
    config: Mapping[str, Any],
    *,
    plugins: Iterable[object] = (),
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    tmp_dir: str | Any | None = None,
    source: Source | None = None,
    sink: Sink | None = None,
) -> RunResult:
    """Validate a pipeline given as a dict, like a config file, and run it.

    The plugin manager holds the built-in plugins, the installed ones (entry points) and
    ``plugins``. A module in ``plugins`` that is also installed or built in is registered
    once, so a plugin's tests can pass its module whether or not it is installed.

    Args:
        config: The pipeline, as the YAML file would parse (``pipeline``, ``source``,
            ``transforms``, ``sink``, ``run``...). It is not modified.
        plugins: Plugin objects (modules, :func:`plugin_of` results) to register as well.
        env: Environment for ``${VAR}`` interpolation (default: ``os.environ``, as for a
            config file); pass ``{}`` for a hermetic test.
        dry_run: Read, transform and describe the requests; send nothing.
        tmp_dir: The output directory (report, rejects, state) when ``config`` has no
            ``output.dir``. Default: a new temporary directory, left in place so the files
            can be read (the report's ``files`` section has their paths); pass pytest's
            ``tmp_path`` to have it cleaned up.
        source: A source instance to read from instead of making one from the config
            (whose ``source`` section is then left out, or gives only its ``type``).
        sink: A sink instance to send to instead of making one from the config (whose
            ``sink`` section is then left out, or gives only its ``type``), e.g. a
            :class:`RecordingSink` to read what it received after the run.

    Returns:
        The exit code and the run report.

    Raises:
        ConfigError: The dict is not a valid pipeline, or a plugin's ``check()`` refused it.
        PluginError: A plugin is broken or two plugins claim one name.
    """
    data = copy.deepcopy(dict(config))
    instances = [plugin for plugin in (source, sink) if plugin is not None]
    for section, plugin in (("source", source), ("sink", sink)):
        if plugin is None:
            continue
        given = data.get(section, {"type": plugin.name})
        if given != {"type": plugin.name}:
            raise ValueError(f"{section} is given as an instance: leave its options out of the config (or give only its type)")
        # The config is validated with the instance's own options (which may have required keys).
        data[section] = {**plugin.options.model_dump(exclude_unset=True), "type": plugin.name}
    # A module that is also built in or installed is registered once (its own tests pass it).
    plugins = tuple(plugins)
    pm = make_plugin_manager(extra_plugins=plugins)
    registry = Registry(pm)
    missing = [plugin for plugin in instances if type(plugin) not in {info.cls for info in registry.infos()}]
    if missing:
        # Instances of classes no plugin registers (a test's own): registered for this run.
        pm = make_plugin_manager(extra_plugins=(*plugins, plugin_of(*dict.fromkeys(type(plugin) for plugin in missing))))
        registry = Registry(pm)
    output = data.get("output")
    if output is None or (isinstance(output, dict) and not output.get("dir")):
        directory = tmp_dir if tmp_dir is not None else tempfile.mkdtemp(prefix="etl-test-")
        data["output"] = {**(output or {}), "dir": str(directory)}
    parsed = parse_config(data, {}, registry, env=os.environ if env is None else env, source="<dict>")
    options = RunOptions(dry_run=dry_run, handle_signals=False)
    return await run_pipeline(parsed, pm, options, source=source, sink=sink)


def _in_new_event_loop(function: Callable[_P, Awaitable[_T]]) -> Callable[_P, _T]:
    """``function`` made synchronous: each call runs it in a new trio event loop."""

    @functools.wraps(function)
    def synchronous(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return trio.run(functools.partial(function, *args, **kwargs))

    return synchronous


run_pipeline_sync = _in_new_event_loop(run_pipeline_from_dict)
run_pipeline_sync.__name__ = run_pipeline_sync.__qualname__ = "run_pipeline_sync"
run_pipeline_sync.__doc__ = """Run :func:`run_pipeline_from_dict` in a new trio event loop, for synchronous tests.

Takes the same arguments. It cannot be called from inside a running event loop
(an async test): await :func:`run_pipeline_from_dict` there.
"""
