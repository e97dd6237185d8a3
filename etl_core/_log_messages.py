"""The ``message`` of a log line: one short sentence for people, besides the event's name and fields.

Each event has templates in :data:`TEMPLATES`, tried in order: the first whose fields
are all present (and not ``None``) gives the message. An event without a template, or
whose fields fit none, gets its name as a sentence (``plugin_disabled`` -> ``plugin
disabled``). Messages are made from the fields after masking, so they never show what
the fields hide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Message templates by event (``str.format`` syntax, over the line's fields).
TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "run_started": ("run started: {source} to {sink}, workers: {workers}, dry run: {dry_run}",),
    "resuming": ("resuming from the checkpoints in {path}",),
    "state_reset": ("forgot {records} checkpoints of earlier runs in {path}",),
    "api_endpoint_discovered": ("sending to {api_endpoint}, the API host of tenant {tenant_id}",),
    "quota_remembered": ("starting under the quota an earlier run measured: {rate} requests/s, burst {burst}",),
    "quota_shared": ("the shards now send {rate} requests/s in all ({source})",),
    "dry_run_request": ("line {line} would be sent (key {key})", "line {line} would be sent"),
    "record_rejected": ("line {line} rejected by {plugin}: {reason}",),
    "retry": ("line {line}: attempt {attempt} failed ({reason}); next one in {delay} s",),
    "paused": (
        "every worker paused for {seconds} s: HTTP {status}",
        "every worker paused for {seconds} s: {reason}",
        "every worker paused for {seconds} s",
    ),
    "give_up": ("line {line}: {reason}",),
    "batch_split": ("line {line}: a batch of {records} records was refused as a whole ({reason}); sending each half",),
    "record_failed": ("line {line} failed: {reason}",),
    "sink_error": ("line {line}: unexpected error in the sink",),
    "outage_started": ("the destination looks down ({reason}); next probe in {next_probe_in_s} s",),
    "outage_probe": ("the destination is still down ({reason}); next probe in {next_probe_in_s} s",),
    "outage_ended": ("the destination is back after {duration_s} s and {probes} probes",),
    "destination_unavailable": ("run stopping: {reason}",),
    "all_rejected": ("run stopping: the first {records} records were all rejected before sending",),
    "failure_rate_exceeded": (
        "run stopping: {share:.0%} of {records} records rejected or failed, over {max_failure_rate:.0%}",
    ),
    "metrics_serving": ("serving Prometheus metrics at {url}",),
    "input_count_failed": ("cannot count the input's records for the progress bar: {reason}",),
    "run_aborted": ("run aborted: {reason}",),
    "hook_failed": ("a plugin's {hook} hook failed",),
    "plugin_broken": ("plugin {plugin} ({package} {version}) failed to load and was skipped: {reason}", "plugin {plugin} failed to load and was skipped: {reason}"),
    "plugin_disabled": ("plugin {plugin} ({package} {version}) switched off by ETL_DISABLE_PLUGINS", "plugin {plugin} switched off by ETL_DISABLE_PLUGINS"),
    "sink_close_failed": ("the sink failed to close",),
    "file_write_failed": ("cannot write {path}: {reason}",),
    "state_write_failed": ("cannot write the state file {path}: {reason}", "cannot write the state file {path}"),
    "run_crashed": ("run crashed: {reason}",),
    "stopping": ("{signal}: stopping; sends in progress get {in_flight_deadline_s} s ({hint})",),
    "stopping_now": ("{signal} again: sends in progress are cancelled",),
    "run_finished": (
        "run finished: {records_ok} ok, {records_rejected} rejected, {records_failed} failed in {duration_s} s",
    ),
}

_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def message_for(event: str, fields: Mapping[str, Any]) -> str:
    """The message of an ``event`` line with ``fields`` (see the module docstring)."""
    present = {name: _shown(value) for name, value in fields.items() if value is not None}
    for template in TEMPLATES.get(event, ()):
        try:
            return template.format_map(present)
        except (KeyError, ValueError, TypeError):  # a field missing, or not of the kind the template expects
            continue
    return event.replace("_", " ") if _EVENT_NAME.fullmatch(event) else event


def add_message(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: add ``message``, unless the caller gave one."""
    if "message" not in event_dict:
        event_dict["message"] = message_for(str(event_dict.get("event", "")), event_dict)
    return event_dict


def _shown(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value
