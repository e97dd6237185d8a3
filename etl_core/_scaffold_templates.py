"""The files ``etl init plugin`` writes, as templates.

``{{key}}`` is replaced by :func:`etl_core._scaffold.render`; the keys are ``type`` (the
plugin's name in configs), ``Class`` (its class), ``package`` (the import name),
``distribution``, ``kind``, ``Kind`` (the base class), ``hook``, ``module`` (of the
class), ``ENV`` (a prefix for environment variables), ``dependencies`` (the quoted
requirements) and ``config`` (the README's example pipeline).
"""

from __future__ import annotations

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "{{distribution}}"
version = "0.1.0"
description = "A {{type}} {{kind}} for etl"
readme = "README.md"
requires-python = ">=3.11"
dependencies = [{{dependencies}}]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-trio>=0.8"]

# How etl finds the plugin once the package is installed: an entry point in the group
# "etl", with a name no other plugin uses, naming the module with the hook implementations.
[project.entry-points.etl]
{{type}} = "{{package}}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra --strict-markers"
# Async tests (a sink's open, send and aclose) run on trio, as etl runs plugins.
trio_mode = true
'''

INIT = '''\
"""A {{type}} {{kind}} for etl.

Installed, the package is found through its entry point (see pyproject.toml) and the
{{kind}} is available as ``type: {{type}}`` in pipeline configs.
"""

from __future__ import annotations

from etl_core import {{Kind}}, hookimpl

from .{{module}} import {{Class}}

__all__ = ["{{Class}}", "{{hook}}"]


@hookimpl
def {{hook}}() -> list[type[{{Kind}}]]:
    """Register the ``{{type}}`` {{kind}}."""
    return [{{Class}}]
'''

SOURCE = '''\
"""The {{type}} source: streams records from a file of JSON objects, one per line.

Replace ``read`` (and the options) with what reads your input; keep it streaming.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pydantic
from etl_core import ConfigError, FatalError, PluginOptions, Record, Source, open_regular_file


class {{Class}}Options(PluginOptions):
    """Options of the {{type}} source: the keys of the config's ``source`` section."""

    path: str = pydantic.Field(min_length=1, description="The file to read: one JSON object per line.")
    encoding: str = pydantic.Field("utf-8", description="The text encoding of the file.")


class {{Class}}(Source):
    """Read records from a file of JSON objects, one per line, streaming it."""

    name = "{{type}}"
    Options = {{Class}}Options
    options: {{Class}}Options

    def __init__(self, options: {{Class}}Options) -> None:
        super().__init__(options)
        self._done = 0
        self._size: int | None = None

    def check(self) -> None:
        """Called by ``etl validate`` and before a run: refuse what cannot work, naming the option."""
        try:
            open_regular_file(self.options.path).close()  # refuses a directory, a pipe, a device
        except OSError as exc:
            raise ConfigError(f"cannot read {self.options.path}: {exc.strerror or exc}", path="source.path") from None

    def read(self) -> Iterator[Record]:
        """Yield one record per line that is not blank.

        The runner calls this in a worker thread: blocking reads are fine. A line that
        cannot be read becomes a rejected record (in the rejects file, never sent);
        raise FatalError only when the whole input is unusable.
        """
        try:
            file = open(self.options.path, "rb")
        except OSError as exc:
            raise FatalError(f"cannot open {self.options.path}: {exc.strerror}") from None
        with file:
            self._size = os.fstat(file.fileno()).st_size
            for number, line in enumerate(file, start=1):  # one line at a time: memory stays flat
                self._done += len(line)
                text = line.decode(self.options.encoding, "replace").strip()
                if not text:
                    continue
                try:
                    data = json.loads(text)
                except ValueError as exc:
                    yield Record({}, number, {"text": text[:1000]}, error=f"not valid JSON: {exc}")
                    continue
                if not isinstance(data, dict):
                    yield Record({}, number, {"text": text[:1000]}, error="not a JSON object")
                    continue
                yield Record(data, number, data)

    def progress(self) -> tuple[int, int | None]:
        """Bytes read of the file size, for the progress bar."""
        return (self._done, self._size)
'''

TRANSFORM = '''\
"""The {{type}} transform: tidies the spaces in chosen fields, and can require them.

Replace ``apply`` (and the options) with your own change of a record.
"""

from __future__ import annotations

from typing import Any

import pydantic
from etl_core import PluginOptions, RecordRejected, Transform


class {{Class}}Options(PluginOptions):
    """Options of the {{type}} transform: the keys of its item in the config's ``transforms``."""

    fields: list[str] = pydantic.Field(min_length=1, description="The fields to tidy: extra spaces are removed.")
    required: bool = pydantic.Field(False, description="Reject a record where one of the fields is missing or empty.")


class {{Class}}(Transform):
    """Tidy the spaces in chosen fields; optionally reject records where one is empty."""

    name = "{{type}}"
    Options = {{Class}}Options
    options: {{Class}}Options

    def required_fields(self) -> dict[str, tuple[str | int, ...]]:
        """The input fields every record must have, each with the option naming it.

        Checked against the source's fields (e.g. the CSV header) before anything is sent.
        """
        if not self.options.required:
            return {}
        return {field: ("fields", index) for index, field in enumerate(self.options.fields)}

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the record's new fields: a pure function, with no I/O and no state.

        Raises:
            RecordRejected: A required field is missing or empty; the reason names it.
        """
        result = dict(data)
        for field in self.options.fields:
            value = data.get(field)
            text = "" if value is None else " ".join(str(value).split())
            if not text and self.options.required:
                raise RecordRejected(f"{field}: required")
            if value is not None:
                result[field] = text
        return result
'''

SINK = '''\
"""The {{type}} sink: POSTs each record as JSON to an HTTP API, and classifies the answer.

The runner owns retries, pauses, rate limiting and bookkeeping: the sink sends one
record and says what happened, by returning or by raising one of etl's errors.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
import pydantic
from etl_core import (
    ConfigError,
    FatalError,
    PermanentError,
    PluginOptions,
    Record,
    RunContext,
    SendResult,
    Sink,
    ThrottledError,
    TransientError,
    __version__,
    parse_rate_limit,
    parse_retry_after,
    register_secret,
)


class {{Class}}Options(PluginOptions):
    """Options of the {{type}} sink: the keys of the config's ``sink`` section."""

    url: str = pydantic.Field(description="Where each record is POSTed (https://, or http:// to localhost).")
    api_key: pydantic.SecretStr = pydantic.Field(description="Sent as a Bearer token; give it as ${{{ENV}}_API_KEY}.")
    timeout: float = pydantic.Field(10.0, gt=0, description="Seconds to wait for an answer.")


class {{Class}}(Sink):
    """POST each record's fields as a JSON object to an HTTP API."""

    name = "{{type}}"
    Options = {{Class}}Options
    options: {{Class}}Options

    #: How requests travel: None for the network; tests set an ``httpx.MockTransport``.
    transport: httpx.AsyncBaseTransport | None = None
    _client: httpx.AsyncClient | None = None

    def check(self) -> None:
        """Called by ``etl validate`` and before a run: refuse what cannot work, naming the option."""
        parts = urllib.parse.urlsplit(self.options.url)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ConfigError("must be an https:// URL (http:// only to localhost)", path="sink.url")

    async def open(self, context: RunContext) -> None:
        """Called once before the first send (not in a dry run)."""
        api_key = self.options.api_key.get_secret_value()
        register_secret(api_key)  # masked in every log line, rejects file and report from now on
        self._client = httpx.AsyncClient(
            transport=self.transport,
            timeout=self.options.timeout,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": f"etl/{__version__}"},
        )

    def describe(self, record: Record) -> dict[str, Any]:
        """The request ``send`` would make, logged by ``etl run --dry-run``."""
        return {"method": "POST", "url": self.options.url, "body": record.data}

    async def send(self, record: Record) -> SendResult:
        """Send one record: return when it was delivered, raise a classified error otherwise.

        Many workers call this at once, on one trio event loop: never block it. A
        blocking client library (one without async calls) runs in a worker thread:
        ``answer = await trio.to_thread.run_sync(client.post, record.data)``.
        """
        assert self._client is not None, "open() was not called"
        try:
            response = await self._client.post(self.options.url, json=record.data)
        except httpx.TimeoutException:
            raise TransientError("timeout") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection error ({type(exc).__name__})") from None
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(status=status, rate_limit=parse_rate_limit(response.headers))
        detail = response.text[:500] or None
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"), date=response.headers.get("Date"))
            raise ThrottledError(f"HTTP {status}: slow down", retry_after=retry_after, status=status, detail=detail)
        if status >= 500:
            raise TransientError(f"HTTP {status}: server error", status=status, detail=detail)
        if status in (401, 403):
            raise FatalError(f"HTTP {status}: the API key was refused; check {{ENV}}_API_KEY")
        raise PermanentError(f"HTTP {status}: refused", status=status, detail=detail)

    async def aclose(self) -> None:
        """Called once at the end, even after an error, and also when open() never was."""
        if self._client is not None:
            await self._client.aclose()

    def destination(self) -> str:
        """The quota the sends count against: the next run starts just under the rate it measured."""
        return f"POST {self.options.url}"
'''

README = '''\
# {{distribution}}

A {{type}} {{kind}} for etl, made with `etl init plugin`.

## Install

```sh
pip install -e '.[test]'    # next to etl, in the same environment
etl plugins                 # lists: {{kind}}  {{type}}  {{distribution}}  0.1.0
```

## Use

```yaml
{{config}}
```

`etl validate pipeline.yaml` checks the config (and the {{kind}}'s `check()`) without
reading or sending anything; `etl run pipeline.yaml` runs it.

## Test

```sh
python -m pytest
```

The tests use etl's plugin test kit, `etl_core.testing`: `run_pipeline_sync` runs a
pipeline given as a dict, validated like a config file; `check_plugin_class` checks the
class is well formed. `trio_mode = true` (pyproject.toml) runs `async def` tests on trio.

## Layout

- `pyproject.toml`: the entry point in the group `etl` that makes etl find the plugin.
- `src/{{package}}/__init__.py`: the `{{hook}}` hook, returning the class.
- `src/{{package}}/{{module}}.py`: `{{Class}}`, its `Options` and its code.
- `tests/test_{{type}}.py`: the tests.

Plugins import only from `etl_core` (and `etl_core.testing` in tests): the names etl
documents for plugins in its guide to writing plugins (docs/plugins.md).
'''

#: The README's example pipeline, by kind.
CONFIGS = {
    "source": '''\
pipeline: {{type}}-to-jsonl
source:
  type: {{type}}
  path: records.jsonl
sink:
  type: jsonl
  path: out/records.jsonl''',
    "transform": '''\
pipeline: tidy-names
source:
  type: csv
  path: people.csv
transforms:
  - type: {{type}}
    fields: [name]
    required: true
sink:
  type: jsonl
  path: out/people.jsonl''',
    "sink": '''\
pipeline: people-to-{{type}}
key: id
source:
  type: csv
  path: people.csv
sink:
  type: {{type}}
  url: https://api.example.com/records
  api_key: ${{{ENV}}_API_KEY}''',
}

#: The module with the plugin class, and its tests, by kind.
MODULES = {"source": SOURCE, "transform": TRANSFORM, "sink": SINK}
