"""A local, CXone-like HTTP API for demos, tests and benchmarks.

The sandbox implements the small part of the NICE CXone API that the contact sink uses:

* ``POST /oauth/token``: OAuth 2.0 client-credentials grant (HTTP Basic auth or form fields).
* ``PATCH /api/v2/contacts/{id}``: partial update of a contact (field validation, 404 for
  unknown ids, 401 for missing or expired tokens).
* ``GET /api/v2/contacts/{id}``: the current fields of a contact.
* ``POST /auth/token`` (password and refresh_token grants with an access key), the legacy
  ``POST /authentication/v1/token/access-key`` and ``POST /public/user/refresh``: JWT-shaped
  tokens whose claims name the tenant (``tenantId``, ``area``, ``icBUId``).
* ``GET /.well-known/openid-configuration`` and ``/.well-known/cxone-configuration?tenantId=``:
  the token endpoint and the tenant's API host.
* Admin API bulk endpoints under ``/inContactAPI/services/v{N}.0``: dynamic address-book
  entries upserted by ``externalId`` (``PUT /address-books/{id}/dynamic-entries``), standard
  entries (``POST``/``PUT /address-books/{id}/entries``) and do-not-call records
  (``POST /dnc-groups/{groupId}/records``), each answered with one result per entry;
  :meth:`Sandbox.directory_entries` shows what they hold.

It also has knobs to make it misbehave the way a real tenant does: a quota in several shapes
(token bucket, fixed or sliding window, a schedule that moves it, a penalty for hammering, a
cap on requests in flight) answered with ``429`` or ``503`` and a retry header in any of its
forms, added and jittered latency, random 5xx answers, dropped connections after an update
was applied, a full outage, and short-lived tokens. Knobs can be changed while it runs, from Python (``sandbox.settings.outage = True``)
or over HTTP (``POST /sandbox/settings``); ``GET /sandbox/stats`` shows what it saw.

Seeded contacts are ``contact_id(0)`` .. ``contact_id(seed_count - 1)``: deterministic UUIDs,
so a CSV file can be generated that matches them (see :mod:`etl_cxone.sample_data`).

Run it from the command line with ``etl sandbox cxone`` or ``python -m etl_cxone.sandbox``,
or in-process without a socket through :meth:`Sandbox.transport`.
"""

from __future__ import annotations

from ._cli import add_arguments, main, settings_from_args
from ._contacts import CONTACT_FIELDS, EMAIL_RE, NAMESPACE, contact_id
from ._server import Sandbox, open_sandbox, run_sandbox_in_thread, serve_forever
from ._settings import SandboxSettings

__all__ = [
    "CONTACT_FIELDS",
    "EMAIL_RE",
    "NAMESPACE",
    "Sandbox",
    "SandboxSettings",
    "add_arguments",
    "contact_id",
    "main",
    "open_sandbox",
    "run_sandbox_in_thread",
    "serve_forever",
    "settings_from_args",
]
