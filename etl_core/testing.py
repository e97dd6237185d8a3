"""A kit for testing plugins: run pipelines from dicts, feed and record records, check contracts.

Import it in a plugin's own tests as ``etl_core.testing``::

    from etl_core.testing import ListSource, RecordingSink, plugin_of, run_pipeline_sync

    def test_my_transform(tmp_path):
        sink = RecordingSink()
        result = run_pipeline_sync(
            {
                "pipeline": "t",
                "source": {"type": "list", "items": [{"email": " A@B.COM "}]},
                "transforms": [{"type": "my_transform"}],
            },
            plugins=[plugin_of(ListSource), my_plugin_module],
            sink=sink,
            tmp_dir=tmp_path,
        )
        assert result.exit_code == 0
        assert sink.data() == [{"email": "a@b.com"}]

What it offers:

* :func:`run_pipeline_from_dict` (async) and :func:`run_pipeline_sync` run a pipeline
  described by a dict, validated exactly like a config file.
* :class:`ListSource` (``type: list``) yields records from an ``items`` option.
* :class:`RecordingSink` (``type: recording``) keeps every record it receives and can be
  told to fail chosen records with chosen errors.
* :func:`plugin_of` turns plugin classes into a plugin object to register.
* :func:`assert_classifies`, :func:`check_sink_contract` and :func:`check_plugin_class`
  check that a plugin keeps the contract the runner relies on.
"""

from __future__ import annotations

import collections
import copy
import functools
import importlib.metadata
import inspect
import math
import os
import re
import tempfile
import types
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import pydantic
import pydantic_core
import trio
import yaml

from . import hookspecs
from ._errors import (
    FatalError,
    PermanentError,
    RecordError,
    ThrottledError,
    TransientError,
)
from .base import Plugin, PluginOptions, Record, RunContext, SendResult, Sink, Source, Transform
from .config import parse_config
from .pipeline import RunOptions, RunResult, run_pipeline
from .registry import DEFAULT_PLUGINS, Registry, make_plugin_manager

__all__ = [
    "CLASSIFIED_ERRORS",
    "ListSource",
    "RecordingSink",
    "assert_classifies",
    "check_plugin_class",
    "check_sink_contract",
    "plugin_of",
    "run_pipeline_from_dict",
    "run_pipeline_sync",
]

#: The exceptions a sink may raise from ``send``: the runner knows what each one means.
#: (:class:`~etl_core.RecordError` covers PermanentError, TransientError, ThrottledError
#: and RecordRejected.)
CLASSIFIED_ERRORS: tuple[type[BaseException], ...] = (RecordError, FatalError)

_KINDS: tuple[type[Plugin], ...] = (Source, Transform, Sink)


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
        if not (isinstance(cls, type) and issubclass(cls, _KINDS)):
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
        given = data.setdefault(section, {"type": plugin.name})
        if given != {"type": plugin.name}:
            raise ValueError(f"{section} is given as an instance: leave its options out of the config (or give only its type)")
    pm = make_plugin_manager(extra_plugins=_new_plugins([*plugins, *_classes_of(instances, plugins)]))
    output = data.get("output")
    if output is None or (isinstance(output, dict) and not output.get("dir")):
        directory = tmp_dir if tmp_dir is not None else tempfile.mkdtemp(prefix="etl-test-")
        data["output"] = {**(output or {}), "dir": str(directory)}
    parsed = parse_config(data, {}, Registry(pm), env=os.environ if env is None else env, source="<dict>")
    options = RunOptions(dry_run=dry_run, handle_signals=False)
    return await run_pipeline(parsed, pm, options, source=source, sink=sink)


def run_pipeline_sync(
    config: Mapping[str, Any],
    *,
    plugins: Iterable[object] = (),
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    tmp_dir: str | Any | None = None,
    source: Source | None = None,
    sink: Sink | None = None,
) -> RunResult:
    """Run :func:`run_pipeline_from_dict` in a new trio event loop, for synchronous tests.

    Takes the same arguments. It cannot be called from inside a running event loop
    (an async test): await :func:`run_pipeline_from_dict` there.
    """
    return trio.run(
        functools.partial(
            run_pipeline_from_dict, config, plugins=plugins, env=env, dry_run=dry_run, tmp_dir=tmp_dir,
            source=source, sink=sink,
        )
    )


def _classes_of(instances: list[Plugin], plugins: Iterable[object]) -> list[object]:
    """A plugin registering the classes of ``instances`` that no plugin in ``plugins`` registers."""
    registered = {cls for plugin in plugins if isinstance(plugin, _ClassesPlugin) for cls in plugin.classes}
    missing = list(dict.fromkeys(type(instance) for instance in instances if type(instance) not in registered))
    return [plugin_of(*missing)] if missing else []


def _new_plugins(plugins: Iterable[object]) -> tuple[object, ...]:
    """Leave out modules the plugin manager registers anyway (built in or installed)."""
    loaded = set(DEFAULT_PLUGINS)
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
        module, _, attr = ep.value.partition(":")
        if not attr:
            loaded.add(module.strip())
    return tuple(
        plugin
        for plugin in plugins
        if not (isinstance(plugin, types.ModuleType) and plugin.__name__ in loaded)
    )


# -- a source and a sink for tests -----------------------------------------------------


class ListSource(Source):
    """Yield one record per item of the ``items`` option (test source).

    Record ``n`` (1-based) has ``line`` n, ``data`` a copy of the item and ``raw`` the
    item itself, so the rejects file shows the item's fields.
    """

    name = "list"

    class Options(PluginOptions):
        """Options of the list source."""

        items: list[dict[str, Any]] = pydantic.Field(description="The records' fields, in order.")

    options: Options

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self._done = 0

    def read(self) -> Iterator[Record]:
        for line, item in enumerate(self.options.items, start=1):
            self._done = line
            yield Record(dict(item), line=line, raw=item)

    def progress(self) -> tuple[int, int | None]:
        """Return (items read, number of items)."""
        return (self._done, len(self.options.items))


FailureKind = Literal["permanent", "transient", "throttled", "fatal"]

#: One scripted outcome: an exception to raise, a result to return (or None for success).
Outcome = BaseException | SendResult | None


class RecordingSink(Sink):
    """Keep every record it receives; fail chosen records on demand (test sink).

    Create one and hand it to the run, then read what it received::

        sink = RecordingSink(failures={"3": PermanentError("no", status=404)})
        result = await run_pipeline_from_dict(config, sink=sink)
        assert sink.data() == [...]

    * ``sink.received``: the records delivered (not failed), in delivery order;
      ``sink.data()`` is their ``data`` dicts;
    * ``sink.attempts``: a :class:`collections.Counter` of ``send`` calls per record id
      (the record's key, else its line number as a string), failures included;
    * ``sink.context``: the :class:`~etl_core.RunContext` it was opened with, and
      ``sink.closed``.

    Failures can come from the config (``fail: {id: kind}``) or from Python
    (``failures={id: outcome}``): an exception to raise on every attempt, or a list of
    outcomes (exceptions, :class:`~etl_core.SendResult` or ``None``) used one per
    attempt, after which sends succeed. Config ``fail`` kinds raise:

    * ``permanent``: PermanentError, status 400 (not retried);
    * ``transient``: TransientError, status 503 (retried, with backoff);
    * ``throttled``: ThrottledError, status 429, retry_after 0 (retried at once);
    * ``fatal``: FatalError (stops the run).

    Args:
        options: The options (default: every option's default).
        failures: Record id -> an exception raised on every attempt, or a list of
            outcomes used one per attempt (then sends succeed).
    """

    name = "recording"

    class Options(PluginOptions):
        """Options of the recording sink."""

        fail: dict[str, FailureKind] = pydantic.Field(
            {},
            description="Record id (key, or line number when the pipeline has no key) -> error raised on every attempt.",
        )
        delay: float = pydantic.Field(0.0, ge=0, description="Seconds each send takes (to test concurrency).")
        status: int | None = pydantic.Field(200, description="Status reported for a delivered record.")

    options: Options

    def __init__(self, options: Options | None = None, *, failures: Mapping[str, Outcome | list[Outcome]] | None = None) -> None:
        super().__init__(options if options is not None else self.Options())
        self.received: list[Record] = []
        self.attempts: collections.Counter[str] = collections.Counter()
        self.context: RunContext | None = None
        self.closed = False
        self._scripts = {
            key: list(outcomes) if isinstance(outcomes, list) else outcomes for key, outcomes in (failures or {}).items()
        }

    def data(self) -> list[dict[str, Any]]:
        """Return the ``data`` of every delivered record, in delivery order."""
        return [record.data for record in self.received]

    async def open(self, context: RunContext) -> None:
        self.context = context

    async def send(self, record: Record) -> SendResult | None:
        record_id = record.key if record.key is not None else str(record.line)
        self.attempts[record_id] += 1
        if self.options.delay:
            await trio.sleep(self.options.delay)
        else:
            await trio.lowlevel.checkpoint()
        kind = self.options.fail.get(record_id)
        if kind is not None:
            raise _configured_failure(kind, record_id)
        outcome: Outcome = SendResult(status=self.options.status)
        script = self._scripts.get(record_id)
        if isinstance(script, list):
            if script:
                outcome = script.pop(0)
        elif script is not None:
            outcome = script
        if isinstance(outcome, BaseException):
            raise _fresh(outcome)
        self.received.append(record)
        return outcome

    async def aclose(self) -> None:
        self.closed = True


def _fresh(exc: BaseException) -> BaseException:
    """A copy of a scripted exception, so raising it again does not chain tracebacks."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


def _configured_failure(kind: FailureKind, record_id: str) -> BaseException:
    reason = f"recording sink: {kind} failure of {record_id}"
    if kind == "permanent":
        return PermanentError(reason, status=400)
    if kind == "transient":
        return TransientError(reason, status=503)
    if kind == "throttled":
        return ThrottledError(reason, status=429, retry_after=0.0)
    return FatalError(reason)


# -- contract checks -------------------------------------------------------------------


async def assert_classifies(
    sink_call: Awaitable[Any] | Callable[[], Awaitable[Any]],
    expected: type[BaseException] | type[SendResult] | None = None,
    *,
    status: int | None = None,
) -> BaseException | SendResult | None:
    """Await a sink call and assert that it kept the outcome contract.

    A sink must either return a :class:`~etl_core.SendResult` (or ``None``) or raise one
    of :data:`CLASSIFIED_ERRORS`; anything else (a bare ``ValueError``, an
    ``httpx.ConnectError`` that slipped through) leaves the runner guessing. Useful
    against a local test server that answers 400, 404, 429, 500...::

        exc = await assert_classifies(sink.send(record), ThrottledError, status=429)
        assert exc.retry_after == 2

    Args:
        sink_call: The awaitable (``sink.send(record)``) or a function returning it.
        expected: The outcome wanted: an error class (a subclass counts, so
            ``TransientError`` accepts a ``ThrottledError``), ``SendResult`` for a
            delivery, or ``None`` for any classified outcome.
        status: The status the result or error must carry, if given.

    Returns:
        The outcome: the exception raised, or the value returned.

    Raises:
        AssertionError: The call broke the contract or did not match ``expected``.
    """
    awaitable = sink_call() if callable(sink_call) else sink_call
    try:
        outcome: BaseException | SendResult | None = await awaitable
    except CLASSIFIED_ERRORS as exc:
        outcome = exc
        problems = _error_problems(exc)
    except Exception as exc:
        raise AssertionError(
            f"the sink raised an unclassified {type(exc).__module__}.{type(exc).__qualname__}: {exc}; "
            "a sink must return a SendResult (or None) or raise PermanentError, TransientError, "
            "ThrottledError, FatalError or RecordRejected"
        ) from exc
    else:
        if outcome is not None and not isinstance(outcome, SendResult):
            raise AssertionError(f"the sink returned {outcome!r}; it must return a SendResult or None")
        problems = []
    if problems:
        raise AssertionError(f"the sink raised {type(outcome).__name__} with " + "; ".join(problems))
    if expected is not None:
        if expected is SendResult:
            if isinstance(outcome, BaseException):
                raise AssertionError(f"expected a delivery, the sink raised {_describe(outcome)}") from outcome
        elif not isinstance(outcome, expected):
            got = _describe(outcome) if isinstance(outcome, BaseException) else f"a delivery ({outcome!r})"
            raise AssertionError(f"expected {expected.__name__}, got {got}")
    if status is not None:
        actual = getattr(outcome, "status", None)
        if actual != status:
            raise AssertionError(f"expected status {status}, got {actual!r} ({_describe(outcome)})")
    return outcome


def _describe(outcome: object) -> str:
    if isinstance(outcome, BaseException):
        return f"{type(outcome).__name__}({str(outcome)!r}, status={getattr(outcome, 'status', None)!r})"
    return repr(outcome)


def _error_problems(exc: BaseException) -> list[str]:
    problems: list[str] = []
    if not str(exc).strip():
        problems.append("an empty message (say what went wrong; it lands in logs and rejects)")
    if isinstance(exc, RecordError):
        if not isinstance(exc.reason, str) or not exc.reason.strip():
            problems.append("an empty reason")
        if exc.status is not None and (isinstance(exc.status, bool) or not isinstance(exc.status, int)):
            problems.append(f"status {exc.status!r} (must be an int or None)")
        if exc.detail is not None and not isinstance(exc.detail, str):
            problems.append(f"detail {exc.detail!r} (must be a str or None)")
    if isinstance(exc, ThrottledError) and exc.retry_after is not None:
        value = exc.retry_after
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            problems.append(f"retry_after {value!r} (must be None or seconds >= 0, already parsed and clamped)")
    return problems


async def check_sink_contract(
    sink: Sink, *records: Record, context: RunContext | None = None
) -> list[BaseException | SendResult | None]:
    """Run a sink through its whole life and assert it keeps the contract at every step.

    Opens the sink, then for each record checks ``describe()`` (a dict, or a
    :class:`~etl_core.RecordError`) and ``send()`` (see :func:`assert_classifies`),
    and finally closes it (``aclose()`` must not raise), even after a failed check.

    Args:
        sink: A sink instance, e.g. ``MySink(MySink.Options(url=server_url))``.
        *records: Records to describe and send, e.g. one the server accepts and one it refuses.
        context: The run context to open the sink with (default: a dummy run writing
            into a temporary directory).

    Returns:
        The outcome of each send, in order (exceptions are returned, not raised).

    Raises:
        AssertionError: A step broke the contract.
    """
    if not isinstance(sink, Sink):
        raise AssertionError(f"{sink!r} is not a Sink instance")
    if not records:
        raise TypeError("check_sink_contract() needs at least one record")
    outcomes: list[BaseException | SendResult | None] = []
    with tempfile.TemporaryDirectory(prefix="etl-contract-") as directory:
        context = context or RunContext(run_id="contract-check", pipeline="contract-check", output_dir=directory)
        try:
            await sink.open(context)
            for record in records:
                _check_describe(sink, record)
                outcomes.append(await assert_classifies(sink.send(record)))
        finally:
            try:
                await sink.aclose()
            except Exception as exc:
                raise AssertionError(f"aclose() raised {type(exc).__name__}: {exc}") from exc
    return outcomes


def _check_describe(sink: Sink, record: Record) -> None:
    try:
        described = sink.describe(record)
    except RecordError:
        return
    except Exception as exc:
        raise AssertionError(
            f"describe() raised an unclassified {type(exc).__name__}: {exc}; it must return a dict or raise RecordRejected"
        ) from exc
    if not isinstance(described, dict):
        raise AssertionError(f"describe() returned {described!r}; it must return a dict (logged by --dry-run)")


_YAML_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def check_plugin_class(cls: type[Plugin], example_options: Mapping[str, Any] | None = None) -> None:
    """Assert that a plugin class is well formed, before the registry or a user finds out.

    Checks that it subclasses exactly one of Source, Transform and Sink; that its
    ``name`` is a plain identifier YAML reads as a string (not ``null``, ``true``, ``1``...);
    that it has a docstring (``etl plugins`` shows its first line); that ``Options`` is a
    :class:`~etl_core.PluginOptions` subclass that forbids unknown keys, has a JSON schema
    (``etl schema``) and valid defaults; that the plugin's methods are sync or async as the
    runner calls them; and, with ``example_options``, that they validate and the class can
    be instantiated with them.

    Args:
        cls: The plugin class.
        example_options: Options as a config section would give them (without ``type``).

    Raises:
        AssertionError: Listing every problem found.
    """
    problems: list[str] = []
    bases = [base for base in _KINDS if isinstance(cls, type) and issubclass(cls, base)]
    if len(bases) != 1:
        raise AssertionError(f"{cls!r} must subclass exactly one of Source, Transform and Sink")
    kind = bases[0]

    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        problems.append("`name` must be a non-empty string (the `type:` of the config)")
    elif not _YAML_SAFE_NAME.match(name) or yaml.safe_load(name) != name:
        problems.append(f"`name` {name!r} would not be read back as that string from `type: {name}` in YAML")
    if not (cls.__doc__ or "").strip():
        problems.append("the class has no docstring (its first line describes it in `etl plugins`)")

    options_cls = getattr(cls, "Options", None)
    if not (isinstance(options_cls, type) and issubclass(options_cls, PluginOptions)):
        problems.append("`Options` must be a subclass of etl_core.PluginOptions")
    else:
        problems += _options_problems(options_cls)
        if example_options is not None:
            try:
                _validating_defaults(options_cls).model_validate(dict(example_options))
                options = options_cls.model_validate(dict(example_options))
            except pydantic.ValidationError as exc:
                problems.append(f"example options do not validate: {exc}")
            else:
                try:
                    cls(options)
                except Exception as exc:
                    problems.append(f"the class cannot be created with the example options: {type(exc).__name__}: {exc}")

    methods = {Source: ("read", False), Transform: ("apply", False), Sink: ("send", True)}
    method, must_be_async = methods[kind]  # type: ignore[index]
    impl = getattr(cls, method)
    if impl is getattr(kind, method):
        problems.append(f"`{method}` is not implemented")
    elif inspect.iscoroutinefunction(impl) != must_be_async or inspect.isasyncgenfunction(impl):
        problems.append(f"`{method}` must be {'an async' if must_be_async else 'a plain (not async)'} method")
    for sync_method in ("check", "describe", "progress"):
        impl = getattr(cls, sync_method, None)
        if impl is not None and (inspect.iscoroutinefunction(impl) or inspect.isasyncgenfunction(impl)):
            problems.append(f"`{sync_method}` must be a plain (not async) method")
    for async_method in ("open", "aclose"):
        impl = getattr(cls, async_method, None)
        if kind is Sink and impl is not None and not inspect.iscoroutinefunction(impl):
            problems.append(f"`{async_method}` must be an async method")
    if problems:
        raise AssertionError(f"plugin class {cls.__qualname__}:\n- " + "\n- ".join(problems))


def _options_problems(options_cls: type[PluginOptions]) -> list[str]:
    problems: list[str] = []
    if options_cls.model_config.get("extra") != "forbid":
        problems.append("`Options` must forbid unknown keys (keep PluginOptions' model_config extra='forbid')")
    try:
        options_cls.model_json_schema()
    except Exception as exc:
        problems.append(f"`Options` has no JSON schema (`etl schema` would fail): {type(exc).__name__}: {exc}")
    for field_name, field in options_cls.model_fields.items():
        if field.is_required() or field.default_factory is not None:
            continue
        # pydantic does not validate defaults; a wrong one only shows when a user relies on it.
        try:
            pydantic.TypeAdapter(field.rebuild_annotation()).validate_python(field.default)
        except pydantic.ValidationError as exc:
            problems.append(f"default of `{field_name}` ({field.default!r}) is not valid: {exc.errors()[0]['msg']}")
        except (pydantic.PydanticUserError, pydantic_core.SchemaError):
            pass  # a type TypeAdapter cannot handle alone; the example options cover it
    required = [name for name, field in options_cls.model_fields.items() if field.is_required()]
    if not required and not problems:
        # Model validators see the defaults together.
        try:
            _validating_defaults(options_cls).model_validate({})
        except pydantic.ValidationError as exc:
            problems.append(f"the default options are not valid: {exc}")
    return problems


def _validating_defaults(options_cls: type[PluginOptions]) -> type[PluginOptions]:
    config = pydantic.ConfigDict(**{**options_cls.model_config, "validate_default": True})  # type: ignore[typeddict-item]
    return type(options_cls.__name__, (options_cls,), {"model_config": config, "__module__": options_cls.__module__})
