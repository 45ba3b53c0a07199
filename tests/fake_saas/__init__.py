"""A fake of the parts of the Notion and Resend APIs the signup flow uses, and of
Cloudflare Turnstile's siteverify the door calls (see ``turnstile.py``).

Standard library only (it also runs as a service on a bare Debian host with
``/usr/bin/python3``). One HTTP server answers both APIs on one port:

* Notion (give the SDK ``base_url=http://HOST:PORT``; it adds ``/v1``):
  ``GET /v1/databases/{id}``, ``GET /v1/data_sources/{id}``,
  ``POST /v1/data_sources/{id}/query``, ``POST /v1/pages``,
  ``GET /v1/pages/{id}``, ``PATCH /v1/pages/{id}`` (``in_trash: true`` moves a
  page to the trash: queries no longer find it, ``GET`` still answers it with
  ``in_trash: true``).
  Requires ``Authorization: Bearer <token>`` (else 401 ``unauthorized``) and a
  ``Notion-Version`` header (else 400 ``missing_version``). Errors are
  ``{"object": "error", "status": ..., "code": ..., "message": ...}``.
* Resend (give the SDK ``api_url=http://HOST:PORT``): ``POST /emails``,
  ``GET /emails/{id}``. A missing key answers 401 ``missing_api_key``, a wrong
  one 403 ``invalid_api_key``; errors are
  ``{"statusCode": ..., "name": ..., "message": ...}``. ``Idempotency-Key``:
  at most 256 characters (else 400 ``invalid_idempotency_key``); the same key
  with the same body within 24 h returns the original id, with a different body
  409 ``invalid_idempotent_request``, and while the first request with that key is
  still being processed 409 ``concurrent_idempotent_requests`` (how long a send
  takes: config ``resend_processing_seconds``, default 0). ``scheduled_at`` must be
  ISO 8601, in the future and at most 30 days ahead, else 422.
  ``POST /emails/{id}/cancel`` turns a scheduled email's ``last_event`` into
  ``canceled`` and answers ``{"object": "email", "id": ...}``; an email no longer
  scheduled gets 422 (Resend does not document that code), an unknown id 404.
* A Slack-compatible incoming webhook: ``POST /services/...`` with JSON
  ``{"text": ...}`` answers 200 ``ok`` (plain text), else 400 ``invalid_payload``;
  what it received is in ``webhooks`` of the state.
* Cloudflare Turnstile: ``POST /turnstile/v0/siteverify`` (form or JSON), single-use
  tokens valid 300 s, Cloudflare's test secrets; see ``turnstile.py``.
* Rate limits (token buckets, per token): Notion 3 requests/s with a burst of
  10, Resend 2 requests/s with a burst of 2; over the limit answers 429 with
  ``Retry-After`` (seconds). A rate of 0 turns a limit off.

Control endpoints (no auth), for tests and demos:

* ``GET /_fake/health`` -> ``{"ok": true}``
* ``GET /_fake/state`` -> ``{"pages": [...], "emails": [...], "webhooks": [...], "requests": [...],
  "faults": [...], "config": {...}}``; ``requests`` logs every API request
  (service, method, path, status, idempotency_key)
* ``POST /_fake/reset`` -> forget pages, emails, idempotency keys, faults, the
  request log and the rate-limit buckets
* ``POST /_fake/faults`` with one fault or a list of them. A fault applies to
  API requests of one ``service`` (``notion`` or ``resend``), optionally only
  with a given ``method`` and a ``path`` prefix: it lets the first ``skip``
  matching requests through, then answers the next ``count`` ones with
  ``status`` (and ``Retry-After: retry_after`` when given), after sleeping
  ``delay`` seconds. ``status: null`` with a ``delay`` only slows requests down.
  With ``seconds``, the fault answers every matching request for that many
  seconds after it was added (an outage), whatever ``count`` says.
  E.g. ``{"service": "notion", "status": 429, "count": 2, "retry_after": 1}`` or
  ``{"service": "resend", "method": "POST", "path": "/emails", "skip": 1,
  "status": 500}``.
* ``POST /_fake/turnstile/tokens`` -> ``{"token": ...}``: a token as a solved widget
  gives it (``{"age": 301}`` for an expired one)
* ``POST /_fake/config`` with any of ``notion_rate``, ``notion_burst``,
  ``resend_rate``, ``resend_burst``, ``resend_processing_seconds`` to change
  them at run time.
"""

from .common import (
    DEFAULT_DATA_SOURCE_ID,
    DEFAULT_DATABASE_ID,
    DEFAULT_NOTION_TOKEN,
    DEFAULT_RESEND_API_KEY,
    ApiError,
)
from .server import FakeSaaS, FakeServer, make_server
from .turnstile import DEFAULT_TURNSTILE_SECRET

__all__ = [
    "DEFAULT_DATABASE_ID",
    "DEFAULT_DATA_SOURCE_ID",
    "DEFAULT_NOTION_TOKEN",
    "DEFAULT_RESEND_API_KEY",
    "DEFAULT_TURNSTILE_SECRET",
    "ApiError",
    "FakeSaaS",
    "FakeServer",
    "make_server",
]
