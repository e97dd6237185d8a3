"""Pipeline configuration: YAML -> environment interpolation -> validated models.

Every problem is reported as a :class:`ConfigError` naming the key path and the YAML
line, before anything is read or sent. Values are never echoed in messages, since
after interpolation they may hold secrets.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic

from ._errors import ConfigError, PluginError
from ._log_formats import LogFormat
from ._regular_file import read_start
from ._spelling import closest
from ._yaml import MAX_BYTES, Path, load_yaml
from .base import PluginOptions, Sink, Source, Transform
from .logging import DEFAULT_PII_FIELDS
from .registry import Registry

_ENV_PATTERN = re.compile(r"\$(\$)|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Model):
    """How failed sends are retried. Shared by all workers."""

    max_attempts: Annotated[int, pydantic.Field(ge=1, le=100, description="Attempts per record, the first included.")] = 6
    backoff_base: Annotated[float, pydantic.Field(gt=0, description="First backoff delay in seconds (full jitter).")] = 0.5
    backoff_cap: Annotated[float, pydantic.Field(gt=0, description="Largest backoff delay in seconds.")] = 30.0
    retry_after_max: Annotated[
        float, pydantic.Field(gt=0, description="Longest pause honoured from a Retry-After header, in seconds.")
    ] = 300.0
    max_paused: Annotated[
        float,
        pydantic.Field(
            gt=0,
            description="Most seconds the run may spend paused in all (Retry-After, spent rate-limit windows); a "
            "destination asking for more is taken as unavailable: the run stops with exit code 75, and a rerun "
            "sends the records left.",
        ),
    ] = 900.0
    probe_cap: Annotated[
        float,
        pydantic.Field(
            gt=0,
            description="Longest wait in seconds between two probes while the destination is down (backoff from "
            "backoff_base; a longer Retry-After is honoured).",
        ),
    ] = 10.0
    budget: Annotated[
        int, pydantic.Field(ge=0, description="Capacity of the retry budget shared by all workers (token bucket).")
    ] = 500
    throttled_cost: Annotated[int, pydantic.Field(ge=0, description="Budget cost of retrying a throttled (429/503) send.")] = 5
    transient_cost: Annotated[int, pydantic.Field(ge=0, description="Budget cost of retrying a transient failure (5xx, timeout).")] = 10
    success_refund: Annotated[int, pydantic.Field(ge=0, description="Budget refunded by each successful send.")] = 1


class RateSettings(_Model):
    """Client-side rate limiting."""

    adaptive: bool = pydantic.Field(
        True, description="Measure the destination's quota from its throttles (429, 503 with Retry-After) and send just under it."
    )
    max_rate: float | None = pydantic.Field(None, gt=0, description="Fixed ceiling in requests per second (none by default).")
    remember: bool = pydantic.Field(
        True,
        description="Keep the measured quota in the state file, per destination, and start the next run just under it "
        "instead of measuring it again.",
    )


class RunSettings(_Model):
    """How the run is executed."""

    workers: Annotated[int, pydantic.Field(ge=1, le=4096)] | Literal["auto"] = pydantic.Field(
        "auto",
        description="Concurrent sends: a number, or `auto` to grow them to what the quota and the measured latency "
        "need, up to max_workers (overridable with --workers).",
    )
    max_workers: Annotated[int, pydantic.Field(ge=1, le=4096, description="Most concurrent sends with `workers: auto`.")] = 256
    processes: Annotated[int, pydantic.Field(ge=1, le=4096)] | Literal["auto"] = pydantic.Field(
        1,
        description="Processes on this machine, each sending the records of one shard of the keys (--shard K/N), "
        "under one parent that shows one progress bar and one summary; `auto`: one per CPU. Ignored by a run "
        "given --shard or ETL_SHARD. See docs/scale.md.",
    )
    batch_size: Annotated[
        int,
        pydantic.Field(
            ge=1,
            le=100_000,
            description="Records handed from the reader to the workers at once (for a sink that sends in batches, "
            "at least what one request carries).",
        ),
    ] = 200
    batch_chars: Annotated[
        int,
        pydantic.Field(
            ge=1,
            le=1 << 30,
            description="Most characters of input (the records' raw fields) in one batch: a batch ends at batch_size "
            "records or at this, whichever comes first, so that wide rows cannot fill the memory.",
        ),
    ] = 1 << 20
    queue_batches: Annotated[int, pydantic.Field(ge=1, le=10_000, description="Batches buffered between reader and workers (backpressure).")] = 8
    max_outage: Annotated[
        float,
        pydantic.Field(
            gt=0,
            description="Most seconds to wait for a destination that is down (5xx, refused connections or timeouts "
            "for every record, not one): meanwhile one probe at a time goes out and no record is charged an attempt. "
            "Past it the run stops with exit code 75, and a rerun sends the records left.",
        ),
    ] = 600.0
    drain_timeout: Annotated[float, pydantic.Field(ge=0, description="Seconds in-flight sends may take to finish after Ctrl-C/SIGTERM.")] = 30.0
    duplicate_keys: Literal["last", "reject"] = pydantic.Field(
        "last",
        description="A key seen again in the same input: `last` sends it too, after the earlier one (the last one wins); "
        "`reject` rejects it (the first one wins).",
    )
    max_failure_rate: float | None = pydantic.Field(
        None,
        gt=0,
        le=1,
        description="Stop the run when more than this share of records is rejected or fails "
        "(checked once min_records_for_failure_rate have an outcome): a sign of a wrong mapping or credentials.",
    )
    min_records_for_failure_rate: Annotated[
        int, pydantic.Field(ge=1, description="Records with an outcome before max_failure_rate is checked.")
    ] = 1000
    stop_if_first_rejected: Annotated[int, pydantic.Field(ge=1)] | None = pydantic.Field(
        1000,
        description="Stop the run (exit code 1) when this many first records were all rejected before sending "
        "(unreadable, or refused by a transform): the config does not fit the input, and the rest would be "
        "rejected too. null turns it off.",
    )
    retry: RetrySettings = RetrySettings()
    rate: RateSettings = RateSettings()


class OutputSettings(_Model):
    """Where the run writes its files. Relative paths are resolved from the current directory."""

    dir: str = pydantic.Field("out", description="Directory for the report, rejects and other run files; one run at a time uses it (its lease: run.lock).")
    rejects: str = pydantic.Field("rejects.csv", description="Rejects file (CSV), relative to dir.")
    report: str = pydantic.Field("report.json", description="Run report (JSON), relative to dir.")
    success: str = pydantic.Field("", description="Optional success file (CSV: key, line, status), relative to dir; off when empty.")


class StateSettings(_Model):
    """The checkpoint store that makes reruns resume (needs `key`)."""

    enabled: bool = pydantic.Field(True, description="Record each record's outcome; skip records already done on a rerun.")
    path: str = pydantic.Field("state.db", description="SQLite file, relative to output.dir (when url is not set).")
    url: pydantic.SecretStr | None = pydantic.Field(
        None,
        description="A PostgreSQL database to keep the state in instead of the SQLite file, shared by every machine that "
        "runs the pipeline: `postgresql://USER:${PGPASSWORD}@HOST[:PORT]/DATABASE[?sslmode=require]`.",
    )
    resend_permanent_failures: bool = pydantic.Field(
        False, description="On a rerun, send again records refused for good (400, 404) even if unchanged (also --retry-rejected)."
    )

    @pydantic.field_validator("url")
    @classmethod
    def _postgresql_url(cls, url: pydantic.SecretStr | None) -> pydantic.SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL: postgresql://USER:PASSWORD@HOST/DATABASE")
        return url


class LoggingSettings(_Model):
    """Log output. Command-line flags win over these."""

    level: Literal["debug", "info", "warning", "error"] = pydantic.Field("info", description="Lowest level written.")
    format: LogFormat = pydantic.Field(
        "auto",
        description="json, console, ecs (Elastic Common Schema), otel (OpenTelemetry log data model), "
        "or auto (console on a terminal, json otherwise).",
    )
    mask_pii: bool = pydantic.Field(
        False, description="Mask personal data in log lines: the values of pii_fields, and email addresses anywhere."
    )
    pii_fields: list[str] = pydantic.Field(
        list(DEFAULT_PII_FIELDS), description="Field names whose values mask_pii replaces with ***."
    )


class PluginSection(_Model):
    """A ``source``/``sink``/transform entry: ``type`` plus that plugin's options."""

    model_config = pydantic.ConfigDict(extra="allow", frozen=True)
    type: str = pydantic.Field(description="The plugin's name, as listed by `etl plugins`.")


#: What a pipeline name may hold: it names files and state keys.
_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class PipelineModel(_Model):
    """The whole config file."""

    pipeline: str = pydantic.Field(pattern=_NAME_PATTERN, description="Name of the pipeline (used in logs, state and reports).")
    key: str | None = pydantic.Field(None, description="Field identifying a record (after transforms), for logs, rejects and state.")
    source: PluginSection
    transforms: list[PluginSection] = []
    sink: PluginSection
    run: RunSettings = RunSettings()
    output: OutputSettings = OutputSettings()
    state: StateSettings = StateSettings()
    logging: LoggingSettings = LoggingSettings()


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """A validated pipeline: the core settings plus each plugin's class and options.

    Attributes:
        model: The core settings.
        source: (class, options) of the source.
        transforms: (class, options) of each transform, in order.
        sink: (class, options) of the sink.
        path: The config file it came from.
    """

    model: PipelineModel
    source: tuple[type[Source], PluginOptions]
    transforms: tuple[tuple[type[Transform], PluginOptions], ...]
    sink: tuple[type[Sink], PluginOptions]
    path: str
    lines: Mapping[Path, int] = dataclasses.field(default_factory=dict)

    def locate(self, error: ConfigError) -> ConfigError:
        """Return ``error`` with this file and the line of its key, when it names a key but no line.

        Plugins' checks name the key (``source.path``) but do not know the file's lines.
        """
        if error.line is not None or error.path is None:
            return error
        key: list[str | int] = []
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", error.path):
            key.append(int(part[1:-1]) if part.startswith("[") else part)
        return ConfigError(error.message, path=error.path, line=_line(dict(self.lines), tuple(key)), source=error.source or self.path)

    def masked(self) -> dict[str, Any]:
        """Return the configuration as plain data with secrets masked (for logs and hooks)."""
        data = self.model.model_dump(mode="json")
        data["source"] = {"type": self.model.source.type, **self.source[1].model_dump(mode="json")}
        data["transforms"] = [
            {"type": section.type, **options.model_dump(mode="json")}
            for section, (_, options) in zip(self.model.transforms, self.transforms, strict=False)
        ]
        data["sink"] = {"type": self.model.sink.type, **self.sink[1].model_dump(mode="json")}
        return data

    def secrets(self) -> list[str]:
        """Return the values of the plugins' secret options (:class:`pydantic.SecretStr`), to mask in any output."""
        return [
            value.get_secret_value()
            for _, options in (self.source, *self.transforms, self.sink)
            for value in options.model_dump().values()
            if isinstance(value, pydantic.SecretStr)
        ] + (state_url_secrets(url.get_secret_value()) if (url := self.model.state.url) else [])


def state_url_secrets(url: str) -> list[str]:
    """The secrets of a ``state.url``: the URL itself and its password, to mask in any output."""
    from ._state_store import url_parts

    _, _, password, _, query = url_parts(url)
    passwords = [password, *urllib.parse.parse_qs(query).get("password", [])]
    return [url, *(password for password in passwords if password)]


def interpolate(value: Any, env: Mapping[str, str], lines: dict[Path, int], path: Path = (), source: str | None = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``value``.

    ``$$`` stands for a literal ``$``.

    Raises:
        ConfigError: A variable is unset and has no default.
    """
    if isinstance(value, str):
        if "$" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            if match.group(1):
                return "$"
            name, default = match.group(2), match.group(3)
            value = env.get(name)
            if default is not None:
                return value or default  # like the shell's ${VAR:-default}: unset or empty
            if value is not None:
                return value
            raise ConfigError(
                f"environment variable {name} is not set (set it, or give a default: ${{{name}:-value}})",
                path=_dotted(path),
                line=_line(lines, path),
                source=source,
            )

        return _ENV_PATTERN.sub(substitute, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, lines, path + (k,), source) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, lines, path + (i,), source) for i, v in enumerate(value)]
    return value


def read_config(path: str) -> tuple[Any, dict[Path, int]]:
    """Read a config file's YAML (not yet validated) and the line of every key.

    At most :data:`MAX_BYTES` are read, so a huge file is refused quickly and in little
    memory; a named pipe or a device (``/dev/zero``) is refused unread.

    Raises:
        ConfigError: The file cannot be read, is too large, or is not valid YAML.
    """
    data = read_start(path, MAX_BYTES + 1, what="config file")
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"config file is larger than {MAX_BYTES >> 20} MiB (a config is a few kilobytes); refusing to load it",
            source=path,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("config file is not valid UTF-8", source=path) from None
    return load_yaml(text, source=path)


def load_config(
    path: str,
    registry: Registry,
    *,
    env: Mapping[str, str] | None = None,
    sink_overrides: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """Read, interpolate and validate a pipeline config file.

    Args:
        path: The YAML file.
        registry: Known plugins, to validate each section against its plugin's options.
        env: Environment for ``${VAR}`` interpolation (default: ``os.environ``).
        sink_overrides: Sink options that replace the file's (before interpolation), e.g.
            the URLs and credentials of a local sandbox.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: Anything is wrong; the message names the key and line.
    """
    data, lines = read_config(path)
    env = os.environ if env is None else env
    return parse_config(data, lines, registry, env=env, source=path, sink_overrides=sink_overrides)


def parse_config(
    data: Any,
    lines: dict[Path, int],
    registry: Registry,
    *,
    env: Mapping[str, str],
    source: str,
    sink_overrides: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """Validate already-parsed config data (see :func:`load_config`)."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping of keys (pipeline, source, sink, ...)", line=1, source=source)
    if sink_overrides and isinstance(data.get("sink"), dict):
        data = {**data, "sink": {**data["sink"], **sink_overrides}}
    data = interpolate(data, env, lines, source=source)
    model = _validate(PipelineModel, data, (), lines, source)
    src = _plugin(registry, "source", model.source, ("source",), lines, source)
    transforms = tuple(
        _plugin(registry, "transform", section, ("transforms", i), lines, source)
        for i, section in enumerate(model.transforms)
    )
    sink = _plugin(registry, "sink", model.sink, ("sink",), lines, source)
    return PipelineConfig(model, src, transforms, sink, source, lines)


def _plugin(registry: Registry, kind: Any, section: PluginSection, path: Path, lines: dict[Path, int], source: str) -> tuple[type, PluginOptions]:
    try:
        cls = registry.get(kind, section.type)
    except PluginError as exc:
        raise ConfigError(str(exc), path=_dotted(path + ("type",)), line=_line(lines, path + ("type",)), source=source) from None
    options = _validate(cls.Options, dict(section.model_extra or {}), path, lines, source)
    return cls, options


def _validate(model: type[pydantic.BaseModel], data: Any, prefix: Path, lines: dict[Path, int], source: str) -> Any:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        # A misspelt key explains the "missing" error of the key it was meant to be.
        error = min(errors, key=lambda e: e["type"] != "extra_forbidden")
        path = _key_path(data, error["loc"])
        if error["type"] == "union_tag_invalid":
            path += ("type",)  # the tag names no member: the tag's key is wrong
        loc = prefix + path
        # A value that fits none of a union's forms (`workers: lots`) fails once per form:
        # one problem for the user, whose message names every form.
        count = len({_key_path(data, e["loc"]) for e in errors})
        forms = [e for e in errors if _key_path(data, e["loc"]) == path and e["type"] not in ("extra_forbidden", "missing")]
        message = _message(error, count)
        if error["type"] == "extra_forbidden" and (close := closest(str(path[-1]), _key_names(model))) is not None:
            message = message.replace("(check the spelling;", f"(did you mean {close!r}?", 1)
        if len(forms) > 1:
            message = " or ".join(dict.fromkeys(_message(e, 1) for e in forms)) + message[len(_message(error, 1)) :]
        raise ConfigError(message, path=_dotted(loc) or None, line=_line(lines, loc), source=source) from None


def _key_path(data: Any, loc: tuple[Any, ...]) -> Path:
    """The part of a pydantic error location that names keys of ``data`` (not union members)."""
    path: list[Any] = []
    # pydantic puts the tag of a union tagged by `type` (`auth: {type: password}`) first in
    # the location of an error inside it: right after the mapping's own key.
    tag = data.get("type") if isinstance(data, dict) else None
    for i, part in enumerate(loc):
        if tag is not None and part == tag:
            tag = None
            continue
        tag = None
        if isinstance(data, dict) and part not in data and i + 1 < len(loc) and loc[i + 1] in data:
            continue  # a tagged union member's tag (`spec` of a map field), not a key
        if isinstance(data, dict) and part in data:
            data = data[part]
            tag = data.get("type") if isinstance(data, dict) else None
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif isinstance(part, str) and (part.startswith(("literal[", "constrained-", "function-")) or "[" in part):
            continue  # a union member's tag
        else:
            data = None  # past the data given: the rest of the location is a key path
        path.append(part)
    return tuple(path)


@functools.cache
def _key_names(model: type[pydantic.BaseModel]) -> tuple[str, ...]:
    """Every key that ``model`` and the models inside it accept (for "did you mean")."""
    names: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            names.update(key for key in (node.get("properties") or {}) if isinstance(key, str))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(model.model_json_schema(by_alias=True))
    return tuple(sorted(names))


def _message(error: Any, count: int) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        text = "unknown key (check the spelling; `etl schema` lists every key)"
    elif kind == "missing":
        text = "required key is missing"
    elif kind == "union_tag_invalid":
        text = f"must be one of {error['ctx']['expected_tags']}"
    elif kind == "string_pattern_mismatch" and error["ctx"]["pattern"] == _NAME_PATTERN:
        text = "use only letters, digits, '_', '.' and '-' (no spaces): it names the state and the output files"
    else:
        # pydantic's messages describe the expectation ("Input should be a valid integer")
        # without the value, which may be a secret.
        text = error["msg"][0].lower() + error["msg"][1:]
    if count > 1:
        text += f" (and {count - 1} more problem{'s' if count > 2 else ''})"
    return text


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line(lines: dict[Path, int], path: Path) -> int | None:
    # Fall back to the nearest enclosing key: a missing key has no line of its own.
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
