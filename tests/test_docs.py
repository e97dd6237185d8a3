"""The documentation matches the code.

* Generated parts (config reference tables, the JSON Schema) are exactly what
  ``python tools/docgen.py`` produces now.
* docs/plugins.md has a section per hook and mentions every public name.
* docs/logging.md lists every log event the code emits, with its fields and levels.
* docs/exit-codes.md lists every exit code the code uses.
* Config examples in the docs validate; Python examples compile; the plugin
  tutorials run as written; relative links and anchors resolve.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import io
import json
import re
import subprocess
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydantic
import pytest

import etl_core
from etl_core import hookspecs
from etl_core._yaml import load_yaml
from etl_core.config import parse_config
from etl_core.registry import Registry, make_plugin_manager
from tools import docgen

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Documents owned elsewhere, checked only for what they share (links into them).
_NOT_CHECKED = {"benchmarks.md"}
REGENERATE = "run `python tools/docgen.py` to regenerate it"


def _doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _checked_docs() -> list[Path]:
    return sorted(path for path in DOCS.glob("*.md") if path.name not in _NOT_CHECKED)


def _fenced(text: str, language: str) -> Iterator[str]:
    for match in re.finditer(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        yield match.group(1)


def _section(text: str, heading: str) -> str:
    """The text under a heading (any level) up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.MULTILINE)
    assert match, f"no heading {heading!r}"
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


def _table_rows(text: str) -> list[list[str]]:
    """Cells of the body rows of the Markdown tables in ``text``."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append(cells)
    return rows


# -- generated parts -----------------------------------------------------------------


def test_generated_parts_are_up_to_date():
    stale = docgen.stale_files(ROOT)
    assert not stale, f"out of date: {', '.join(map(str, stale))}; {REGENERATE}"


def test_docgen_check_command_agrees():
    done = subprocess.run(
        [sys.executable, "tools/docgen.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_schema_file_is_the_output_of_etl_schema():
    if list(importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME)):
        pytest.skip("third-party plugins are installed: `etl schema` includes them")
    done = subprocess.run(
        [sys.executable, "-m", "etl_core.cli", "schema"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (DOCS / "etl.schema.json").read_text(encoding="utf-8") == done.stdout, f"docs/etl.schema.json: {REGENERATE}"


def test_shipped_configs_point_editors_at_the_schema():
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        first = config.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../docs/etl.schema.json", config.name


def test_every_builtin_plugin_and_the_core_have_a_generated_reference():
    names = docgen.block_names(_doc("configuration.md"))
    assert "core" in names
    registry = docgen.builtin_registry()
    for kind in ("source", "transform", "sink"):
        for name in registry.names(kind):
            assert f"plugin:{kind}:{name}" in names, f"docs/configuration.md has no reference of the {kind} {name!r}"
    assert "plugin:sink:cxone" in docgen.block_names(_doc("cxone.md"))


def test_generated_block_with_an_unknown_name_is_an_error():
    with pytest.raises(ValueError, match="unknown generated block"):
        docgen.render_document("<!-- BEGIN GENERATED: nonsense -->\n<!-- END GENERATED -->\n")


def test_regenerating_keeps_hand_written_text():
    text = "intro\n\n<!-- BEGIN GENERATED: plugin:sink:discard -->\nstale\n<!-- END GENERATED -->\n\noutro\n"
    rendered = docgen.render_document(text)
    assert rendered.startswith("intro\n\n<!-- BEGIN GENERATED: plugin:sink:discard -->\n")
    assert rendered.endswith("<!-- END GENERATED -->\n\noutro\n")
    assert "stale" not in rendered and "`discard`" in rendered
    assert docgen.render_document(rendered) == rendered


def test_every_core_key_is_in_the_reference():
    from etl_core.config import PipelineModel

    text = _doc("configuration.md")

    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            key = prefix + (field.alias or name)
            yield key
            inner = field.annotation
            if isinstance(inner, type) and issubclass(inner, pydantic.BaseModel) and inner.model_config.get("extra") != "allow":
                yield from keys(inner, key + ".")

    for key in keys(PipelineModel):
        assert f"`{key}`" in text, f"docs/configuration.md does not list {key}; {REGENERATE}"


# -- plugins.md ------------------------------------------------------------------------


def _hookspecs() -> list[str]:
    return [
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, f"{hookspecs.PROJECT_NAME}_spec")
    ]


def test_every_hook_has_a_section():
    text = _doc("plugins.md")
    specs = _hookspecs()
    assert specs, "found no hookspecs"
    for name in specs:
        assert re.search(rf"^### `?{name}`?\s*$", text, re.MULTILINE), f"docs/plugins.md has no `### {name}` section"


def test_no_section_for_a_hook_that_does_not_exist():
    text = _section(_doc("plugins.md"), "Hook reference")
    documented = re.findall(r"^### `?(\w+)`?\s*$", text, re.MULTILINE)
    assert sorted(documented) == sorted(_hookspecs())


def test_every_public_name_is_mentioned():
    text = _doc("plugins.md")
    for name in etl_core.__all__:
        assert re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text), f"docs/plugins.md does not mention {name}"


def test_every_public_name_of_the_http_helpers_is_mentioned():
    import etl_core.http

    text = _section(_doc("plugins.md"), "HTTP sinks")
    for name in etl_core.http.__all__:
        assert re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text), f"docs/plugins.md's HTTP sinks do not mention {name}"


def test_builtin_plugins_are_listed():
    from etl_core.registry import DEFAULT_PLUGINS

    text = _doc("plugins.md")
    for module in DEFAULT_PLUGINS:
        assert f"`{module}`" in text, f"docs/plugins.md does not name the built-in plugin {module}"


# -- the plugin tutorials run as written -----------------------------------------------


def _tutorial_modules() -> dict[str, str]:
    """``# package/module.py`` headed Python blocks of docs/plugins.md, by file name."""
    files = {}
    for block in _fenced(_doc("plugins.md"), "python"):
        first = block.splitlines()[0]
        match = re.fullmatch(r"# ([\w/]+\.py)", first)
        if match:
            files[match.group(1)] = block
    return files


def _import_tutorial(tmp_path: Path, package: str) -> types.ModuleType:
    files = {name: code for name, code in _tutorial_modules().items() if name.startswith(package + "/")}
    assert files, f"docs/plugins.md has no `# {package}/....py` code block"
    for name, code in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(tmp_path))


def _run(config: dict, plugin: types.ModuleType, tmp_path: Path, logs: io.StringIO | None = None) -> dict:
    import trio

    from etl_core.logging import configure_logging
    from etl_core.pipeline import RunOptions, run_pipeline

    configure_logging(fmt="json", level="debug", stream=logs if logs is not None else io.StringIO())
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=(plugin,))
    parsed = parse_config(config, {}, Registry(pm), env={}, source="tutorial.yaml")
    result = trio.run(lambda: run_pipeline(parsed, pm, RunOptions(handle_signals=False)))
    return result.report


def test_source_tutorial_runs(tmp_path):
    plugin = _import_tutorial(tmp_path, "etl_jsonl_source")
    data = tmp_path / "people.jsonl"
    data.write_text('{"id": 1, "name": "Ada"}\n\n{"id": 2, "name": "Grace"}\nnot json\n[1, 2]\n', encoding="utf-8")
    report = _run(
        {
            "pipeline": "tutorial",
            "source": {"type": "jsonl", "path": str(data)},
            "sink": {"type": "jsonl", "path": str(tmp_path / "copy.jsonl")},
            "output": {"dir": str(tmp_path / "out")},
        },
        plugin,
        tmp_path,
    )
    assert report["records"]["read"] == 4
    assert report["records"]["ok"] == 2
    assert report["records"]["rejected"] == 2
    lines = (tmp_path / "copy.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["name"] for line in lines) == ["Ada", "Grace"]


class _Webhook(BaseHTTPRequestHandler):
    """Answers by the record's ``id``: 1 ok, 2 refused (422), 3 throttled once then ok, 4 always 500."""

    seen: dict[str, int] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == "Bearer s3cret-api-key"
        record_id = str(body.get("id"))
        count = self.seen[record_id] = self.seen.get(record_id, 0) + 1
        if record_id == "2":
            self._answer(422, {"error": "id 2 is not welcome"})
        elif record_id == "3" and count == 1:
            self._answer(429, {}, {"Retry-After": "0"})
        elif record_id == "4":
            self._answer(500, {})
        else:
            self._answer(200, {"ok": True})

    def _answer(self, status: int, payload: dict, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_sink_tutorial_runs(tmp_path):
    plugin = _import_tutorial(tmp_path, "etl_webhook")
    data = tmp_path / "in.csv"
    data.write_text("id,name\n1,Ada\n2,Grace\n3,Edsger\n4,Barbara\n", encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Webhook.seen = {}
    logs = io.StringIO()
    try:
        report = _run(
            {
                "pipeline": "tutorial",
                "key": "id",
                "source": {"type": "csv", "path": str(data)},
                "sink": {"type": "webhook", "url": f"http://127.0.0.1:{server.server_port}/hook", "api_key": "s3cret-api-key"},
                "run": {"retry": {"max_attempts": 2, "backoff_base": 0.01}},
                "output": {"dir": str(tmp_path / "out")},
            },
            plugin,
            tmp_path,
            logs,
        )
    finally:
        server.shutdown()
        thread.join()
    assert report["records"] == {**report["records"], "read": 4, "ok": 2, "failed": 2}
    assert report["requests"]["by_status"] == {"200": 2, "422": 1, "429": 1, "500": 2}
    assert _Webhook.seen == {"1": 1, "2": 1, "3": 2, "4": 2}
    rejects = (tmp_path / "out" / "rejects.csv").read_text(encoding="utf-8")
    assert "s3cret-api-key" not in rejects
    events = [json.loads(line)["event"] for line in logs.getvalue().splitlines()]
    assert {"paused", "retry", "give_up", "record_failed"} <= set(events)
    assert "s3cret-api-key" not in logs.getvalue()


def test_testing_example_runs(tmp_path):
    import trio

    code = _tutorial_modules().get("tests/test_webhook.py")
    assert code, "docs/plugins.md has no `# tests/test_webhook.py` example"
    plugin = _import_tutorial(tmp_path, "etl_webhook")
    namespace: dict = {}
    exec(compile(code, "plugins.md tests/test_webhook.py", "exec"), namespace)
    assert namespace["etl_webhook"] is plugin
    namespace["test_the_class_is_well_formed"]()
    namespace["test_a_dry_run_describes_every_record"](tmp_path / "dry")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Webhook.seen = {}
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        # The example's own API key, as the test server expects ours.
        code = code.replace("test-api-key", "s3cret-api-key")
        exec(compile(code, "plugins.md tests/test_webhook.py", "exec"), namespace)
        trio.run(namespace["test_a_refusal_is_permanent"], url)
    finally:
        server.shutdown()
        thread.join()
    assert _Webhook.seen == {"2": 1}


def test_tutorial_pyproject_declares_the_entry_point():
    blocks = list(_fenced(_doc("plugins.md"), "toml"))
    assert any(re.search(r'^\[project\.entry-points\.etl\]\n\w+ = "[\w.]+"', block, re.MULTILINE) for block in blocks)


# -- logging.md: the event reference ---------------------------------------------------

_METHODS = ("debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "msg")
_LEVELS = {"warn": "warning", "exception": "error", "fatal": "critical", "msg": "info"}
#: A logger: log, _log, logger, run_log, self.log, self._logger, get_logger(...) ...
_RECEIVER = r"(?:(?:\b(?:self|cls)\.)?\b(?:[A-Za-z_]\w*_)?_?log(?:ger)?\b|\bget_logger\([^()]*\))"
_LITERAL = r"""(?P<q>["'])(?P<event>(?:(?!(?P=q)).)*)(?P=q)"""
_CALL = re.compile(rf"{_RECEIVER}\s*\.\s*a?(?P<method>{'|'.join(_METHODS)})\s*\(\s*(?:{_LITERAL}|(?P<other>[^\s,)]*))")
_DYNAMIC = re.compile(rf"\bgetattr\(\s*{_RECEIVER}\s*,[^()]*\)\s*\(\s*(?:{_LITERAL}|(?P<other>[^\s,)]*))")
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _sources() -> Iterator[Path]:
    for top in ("etl_core", "plugins"):
        yield from sorted((ROOT / top).rglob("*.py"))


def _scan() -> tuple[dict[str, set[str]], list[str], list[str]]:
    """Regex scan: event -> levels ("?" when dynamic), plain messages, non-literal calls."""
    events: dict[str, set[str]] = {}
    messages: list[str] = []
    problems: list[str] = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for pattern in (_CALL, _DYNAMIC):
            for match in pattern.finditer(text):
                where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
                if match.group("event") is None:
                    problems.append(f"{where}: logger call without a literal event name ({match.group('other')!r})")
                    continue
                event = match.group("event")
                if not _EVENT_NAME.fullmatch(event):
                    messages.append(event)
                    continue
                method = match.groupdict().get("method")
                level = _LEVELS.get(method, method) if method else "?"
                events.setdefault(event, set()).add(level)
    return events, messages, problems


def _ast_calls() -> Iterator[tuple[str, str, list[str], str]]:
    """AST scan: (event, level or "?", keyword names, location) of every logger call with a literal event."""
    receiver = re.compile(r"(?:[A-Za-z_]\w*_)?_?log(?:ger)?")

    def is_logger(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return bool(receiver.fullmatch(node.id))
        if isinstance(node, ast.Attribute):
            return bool(receiver.fullmatch(node.attr)) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            return name == "get_logger"
        return False

    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            level = None
            if isinstance(func, ast.Attribute) and func.attr.lstrip("a") in _METHODS and is_logger(func.value):
                method = func.attr[1:] if func.attr.startswith("a") and func.attr[1:] in _METHODS else func.attr
                level = _LEVELS.get(method, method)
            elif (
                isinstance(func, ast.Call)
                and isinstance(func.func, ast.Name)
                and func.func.id == "getattr"
                and func.args
                and is_logger(func.args[0])
            ):
                level = "?"
            if level is None:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and _EVENT_NAME.fullmatch(first.value):
                keywords = [kw.arg for kw in node.keywords if kw.arg is not None]
                yield first.value, level, keywords, f"{path.relative_to(ROOT)}:{node.lineno}"


def _event_table() -> dict[str, tuple[set[str], set[str]]]:
    """docs/logging.md's event reference: event -> (levels, fields)."""
    table = {}
    for cells in _table_rows(_section(_doc("logging.md"), "Event reference")):
        match = re.fullmatch(r"`(\w+)`", cells[0])
        if not match:
            continue
        levels = set(re.findall(r"\b(debug|info|warning|error|critical)\b", cells[1]))
        fields = set(re.findall(r"`(\w+)`", cells[2]))
        # An event logged in several ways has several rows.
        known_levels, known_fields = table.setdefault(match.group(1), (set(), set()))
        known_levels |= levels
        known_fields |= fields
    return table


def test_the_scan_finds_events():
    events, _, problems = _scan()
    assert not problems, "\n".join(problems)
    assert {"run_started", "run_finished", "record_rejected", "dry_run_request"} <= set(events)


def test_regex_and_ast_scans_agree():
    events, _, _ = _scan()
    assert {event for event, *_ in _ast_calls()} == set(events)


def test_every_event_is_in_the_reference():
    events, _, _ = _scan()
    table = _event_table()
    missing = sorted(set(events) - set(table))
    assert not missing, f"docs/logging.md's event reference lacks: {', '.join(missing)}"


def test_the_reference_lists_no_event_that_is_gone():
    events, _, _ = _scan()
    gone = sorted(set(_event_table()) - set(events))
    assert not gone, f"docs/logging.md lists events the code no longer emits: {', '.join(gone)}"


def test_event_levels_match():
    table = _event_table()
    for event, level, _, where in _ast_calls():
        if level != "?":
            assert level in table[event][0], f"{where}: {event} is logged at {level}, docs/logging.md says {table[event][0]}"


def test_event_fields_are_documented():
    table = _event_table()
    for event, _, keywords, where in _ast_calls():
        undocumented = sorted(set(keywords) - table[event][1])
        assert not undocumented, f"{where}: fields of {event} missing from docs/logging.md: {', '.join(undocumented)}"


def test_every_event_row_gives_its_message():
    from etl_core._log_messages import TEMPLATES, message_for

    documented: dict[str, list[str]] = {}
    for cells in _table_rows(_section(_doc("logging.md"), "Event reference")):
        match = re.fullmatch(r"`(\w+)`", cells[0])
        if match:
            assert len(cells) == 5, f"docs/logging.md: the row of {match.group(1)} has no message column"
            documented.setdefault(match.group(1), []).append(cells[3])
    for event, messages in documented.items():
        forms = TEMPLATES.get(event, (message_for(event, {}),))
        shown = " ".join(messages)
        missing = [form for form in forms if f"`{form}`" not in shown]
        assert not missing, f"docs/logging.md: the message of {event} is {', '.join(missing)}"
    assert not set(TEMPLATES) - set(documented), "docs/logging.md lacks events that have a message"


def test_plain_messages_are_mentioned():
    _, messages, _ = _scan()
    text = _doc("logging.md")
    for message in messages:
        assert message in text, f"docs/logging.md does not mention the log message {message!r}"


def test_the_scan_catches_every_call_form():
    sample = """
log.info("a_one", x=1)
self.log.warning(
    "a_two")
logger.error('a_three')
self._logger.exception("a_four")
run_log.debug("a_five")
getattr(self.log, level)("a_six", **request)
await self.log.ainfo("a_seven")
structlog.get_logger("etl").critical("a_eight")
parser.error("not a log call")
"""
    found = {m.group("event") for pattern in (_CALL, _DYNAMIC) for m in pattern.finditer(sample)}
    assert found == {f"a_{n}" for n in ("one", "two", "three", "four", "five", "six", "seven", "eight")}
    assert _CALL.search("self.log.info(name)").group("other") == "name"


def test_rejects_columns_and_report_fields_are_documented(tmp_path):
    from etl_core.report import REJECT_COLUMNS

    text = _doc("logging.md")
    for column in REJECT_COLUMNS:
        assert f"`{column}`" in text, f"docs/logging.md does not describe the rejects column {column}"
    # The report of a real run, every key at every depth (status codes aside).
    data = tmp_path / "in.csv"
    data.write_text("id,email\n1,a@example.com\n2,\n", encoding="utf-8")
    report = _run(
        {
            "pipeline": "report-fields",
            "key": "id",
            "source": {"type": "csv", "path": str(data)},
            "transforms": [{"type": "validate", "fields": {"email": ["required"]}}],
            "sink": {"type": "discard"},
            "output": {"dir": str(tmp_path / "out"), "success": "ok.csv"},
        },
        types.ModuleType("no_plugin"),
        tmp_path,
    )

    def keys(value, parent=""):
        if isinstance(value, dict) and parent != "by_status":
            for key, item in value.items():
                yield key
                yield from keys(item, key)

    for key in set(keys(report)):
        assert f"`{key}`" in text, f"docs/logging.md does not describe the report field {key}"


# -- exit codes --------------------------------------------------------------------------


def test_every_exit_code_is_documented():
    from etl_core import cli, pipeline

    codes = {
        pipeline.EXIT_OK, pipeline.EXIT_FAILURES, cli.EXIT_USAGE, cli.EXIT_LOCKED, pipeline.EXIT_UNAVAILABLE,
        *pipeline.EXIT_SIGNAL.values(),
    }
    documented = {int(cells[0].strip("`")) for cells in _table_rows(_doc("exit-codes.md")) if cells[0].strip("`").isdigit()}
    assert codes == documented


# -- examples and links ------------------------------------------------------------------


class _AnyEnv(Mapping[str, str]):
    """An environment where every variable is set (URLs for the URL ones)."""

    def __getitem__(self, name: str) -> str:
        return "https://api.example.com/token" if "URL" in name else "value"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_config_examples_validate(tmp_path):
    # The tutorials' configs use the tutorials' plugins.
    tutorials = tuple(_import_tutorial(tmp_path, package) for package in ("etl_jsonl_source", "etl_webhook"))
    registry = Registry(make_plugin_manager(load_entrypoints=False, extra_plugins=tutorials))
    count = 0
    for path in [*_checked_docs(), ROOT / "README.md"]:
        for block in _fenced(path.read_text(encoding="utf-8"), "yaml"):
            if not re.search(r"^pipeline:", block, re.MULTILINE):
                continue
            data, lines = load_yaml(block, source=path.name)
            parse_config(data, lines, registry, env=_AnyEnv(), source=path.name)
            count += 1
    assert count >= 3


def test_python_examples_compile():
    for path in _checked_docs():
        for number, block in enumerate(_fenced(path.read_text(encoding="utf-8"), "python"), 1):
            compile(block, f"{path.name} python block {number}", "exec")


def _slug(heading: str) -> str:
    """The anchor a code host gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.+?)\s*$", text, re.MULTILINE):
        slug = _slug(heading)
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def test_links_resolve():
    for path in [*_checked_docs(), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            assert linked.exists(), f"{path.name}: broken link {target}"
            if anchor and linked.suffix == ".md":
                anchors = _anchors(linked.read_text(encoding="utf-8"))
                assert anchor in anchors, f"{path.name}: link {target} names no heading of {linked.name}"
