"""Checks that a plugin keeps the contract the runner relies on."""

from __future__ import annotations

import inspect
import math
import re
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pydantic
import pydantic_core
import yaml

from .._errors import (
    FatalError,
    RecordError,
    ThrottledError,
)
from ..base import Plugin, PluginOptions, Record, RunContext, SendResult, Sink, Source, Transform
from ._plugins import KINDS

#: The exceptions a sink may raise from ``send``: the runner knows what each one means.
#: (:class:`~etl_core.RecordError` covers PermanentError, TransientError, ThrottledError
#: and RecordRejected.)
CLASSIFIED_ERRORS: tuple[type[BaseException], ...] = (RecordError, FatalError)


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
    A sink that sends in batches (``batching()`` is not None) gets every record in one
    ``send_batch()`` call instead, whose answer must give one classified outcome per record.

    Args:
        sink: A sink instance, e.g. ``MySink(MySink.Options(url=server_url))``.
        *records: Records to describe and send, e.g. one the server accepts and one it refuses.
        context: The run context to open the sink with (default: a dummy run writing
            into a temporary directory).

    Returns:
        The outcome of each send, in order (exceptions are returned, not raised). For a
        batch: each record's outcome from the answer, or the exception the whole request
        raised, once per record.

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
            if sink.batching() is not None:
                outcomes += await _assert_batch_classifies(sink, records)
            else:
                for record in records:
                    outcomes.append(await assert_classifies(sink.send(record)))
        finally:
            try:
                await sink.aclose()
            except Exception as exc:
                raise AssertionError(f"aclose() raised {type(exc).__name__}: {exc}") from exc
    return outcomes


async def _assert_batch_classifies(sink: Sink, records: Sequence[Record]) -> list[BaseException | SendResult | None]:
    """Send ``records`` in one ``send_batch`` call and assert that its answer keeps the contract."""
    answers: Any = None

    async def send_batch() -> None:
        nonlocal answers
        answers = await sink.send_batch(records)

    raised = await assert_classifies(send_batch)
    if raised is not None:
        return [raised] * len(records)
    if not isinstance(answers, Sequence) or isinstance(answers, str | bytes) or len(answers) != len(records):
        raise AssertionError(f"send_batch() answered {answers!r} for {len(records)} records; it must return one outcome per record")
    outcomes: list[BaseException | SendResult | None] = []
    for answer in answers:
        if isinstance(answer, RecordError):
            if problems := _error_problems(answer):
                raise AssertionError(f"send_batch() answered a {type(answer).__name__} with " + "; ".join(problems))
        elif answer is not None and not isinstance(answer, SendResult):
            raise AssertionError(f"send_batch() answered {answer!r} for a record; it must be a SendResult, None or a RecordError")
        outcomes.append(answer)
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
    bases = [base for base in KINDS if isinstance(cls, type) and issubclass(cls, base)]
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
                except Exception as exc:  # noqa: BLE001 - whatever it raises is a problem to report
                    problems.append(f"the class cannot be created with the example options: {type(exc).__name__}: {exc}")

    methods = {Source: ("read", False), Transform: ("apply", False), Sink: ("send", True)}
    method, must_be_async = methods[kind]
    # A sink implements send, send_batch (when it sends in batches) or both.
    implemented = [name for name in (method, "send_batch") if hasattr(kind, name) and getattr(cls, name) is not getattr(kind, name)]
    if not implemented:
        problems.append(f"`{method}` is not implemented" + (" (nor `send_batch`, for a sink that sends in batches)" if kind is Sink else ""))
    for name in implemented:
        impl = getattr(cls, name)
        if inspect.iscoroutinefunction(impl) != must_be_async or inspect.isasyncgenfunction(impl):
            problems.append(f"`{name}` must be {'an async' if must_be_async else 'a plain (not async)'} method")
    for sync_method in ("check", "describe", "progress", "batching", "batch_size_of"):
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
    except Exception as exc:  # noqa: BLE001 - whatever it raises is a problem to report
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
    config = pydantic.ConfigDict(**{**options_cls.model_config, "validate_default": True})
    return type(options_cls.__name__, (options_cls,), {"model_config": config, "__module__": options_cls.__module__})
