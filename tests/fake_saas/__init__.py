"""A fake of the parts of the Notion and Resend APIs the signup flow uses.

Standard library only (it also runs as a service on a bare Debian host with
``/usr/bin/python3``). One HTTP server answers both APIs on one port:

* Notion (give the SDK ``base_url=http://HOST:PORT``; it adds ``/v1``):
  ``GET /v1/databases/{id}``, ``GET /v1/data_sources/{id}``,
  ``POST /v1/data_sources/{id}/query``, ``POST /v1/pages``,
  ``GET /v1/pages/{id}``, ``PATCH /v1/pages/{id}``.
  Requires ``Authorization: Bearer <token>`` (else 401 ``unauthorized``) and a
  ``Notion-Version`` header (else 400 ``missing_version``). Errors are
  ``{"object": "error", "status": ..., "code": ..., "message": ...}``.
* Resend (give the SDK ``api_url=http://HOST:PORT``): ``POST /emails``,
  ``GET /emails/{id}``. A missing key answers 401 ``missing_api_key``, a wrong
  one 403 ``invalid_api_key``; errors are
  ``{"statusCode": ..., "name": ..., "message": ...}``. ``Idempotency-Key``:
  the same key with the same body within 24 h returns the original id, with a
  different body 409 ``invalid_idempotent_request``. ``scheduled_at`` must be
  ISO 8601, in the future and at most 30 days ahead, else 422.
* Rate limits (token buckets, per token): Notion 3 requests/s with a burst of
  10, Resend 2 requests/s with a burst of 2; over the limit answers 429 with
  ``Retry-After`` (seconds). A rate of 0 turns a limit off.

Control endpoints (no auth), for tests and demos:

* ``GET /_fake/health`` -> ``{"ok": true}``
* ``GET /_fake/state`` -> ``{"pages": [...], "emails": [...], "requests": [...],
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
  E.g. ``{"service": "notion", "status": 429, "count": 2, "retry_after": 1}`` or
  ``{"service": "resend", "method": "POST", "path": "/emails", "skip": 1,
  "status": 500}``.
* ``POST /_fake/config`` with any of ``notion_rate``, ``notion_burst``,
  ``resend_rate``, ``resend_burst`` to change the rate limits at run time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_NOTION_TOKEN = "secret_fake_notion_token"
DEFAULT_RESEND_API_KEY = "re_fake_resend_key"
DEFAULT_DATABASE_ID = "6d1a3e4b-0c2f-4a5e-9b7d-1e2f3a4b5c6d"
DEFAULT_DATA_SOURCE_ID = "9f8e7d6c-5b4a-4392-8170-a1b2c3d4e5f6"
IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_SCHEDULE_AHEAD = timedelta(days=30)

#: The seeded "Email Sequence" data source: property name -> type.
DEFAULT_SCHEMA: dict[str, str] = {
    "Name": "title",
    "Email": "email",
    "Business": "rich_text",
    "Segment": "select",
    "Assessment Score": "number",
    "Red Systems": "number",
    "Orange Systems": "number",
    "Yellow Systems": "number",
    "Green Systems": "number",
    "GPS Score": "number",
    "Money Score": "number",
    "Weakest System 1": "rich_text",
    "Weakest System 2": "rich_text",
    "Revenue Leak Total": "number",
    "Sequence Status": "select",
    "Scheduled Email IDs": "rich_text",
    "Sequence Start": "date",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain_id(value: str) -> str:
    return value.replace("-", "").lower()


class ApiError(Exception):
    """An error answer of one of the fake APIs."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Bucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` stored."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """Take a token; return 0, or the seconds to wait when the bucket is empty."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class Fault:
    """A queued failure (see the module docstring)."""

    service: str
    status: int | None = 500
    count: int = 1
    skip: int = 0
    method: str | None = None
    path: str | None = None
    retry_after: float | None = None
    delay: float = 0.0

    def matches(self, service: str, method: str, path: str) -> bool:
        return (
            self.service == service
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or path.startswith(self.path))
        )


class FakeSaaS:
    """State of both fake services. All access goes through ``lock``."""

    def __init__(
        self,
        notion_token: str = DEFAULT_NOTION_TOKEN,
        resend_api_key: str = DEFAULT_RESEND_API_KEY,
        database_id: str = DEFAULT_DATABASE_ID,
        data_source_id: str = DEFAULT_DATA_SOURCE_ID,
        notion_rate: float = 3.0,
        notion_burst: float = 10.0,
        resend_rate: float = 2.0,
        resend_burst: float = 2.0,
    ) -> None:
        self.lock = threading.RLock()
        self.notion_token = notion_token
        self.resend_api_key = resend_api_key
        self.database_id = database_id
        self.data_source_id = data_source_id
        self.rates = {
            "notion_rate": notion_rate,
            "notion_burst": notion_burst,
            "resend_rate": resend_rate,
            "resend_burst": resend_burst,
        }
        self.schema = {
            name: {"id": hashlib.sha1(name.encode()).hexdigest()[:4], "type": kind}
            for name, kind in DEFAULT_SCHEMA.items()
        }
        self.created = _now()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.pages: dict[str, dict[str, Any]] = {}
            self.emails: dict[str, dict[str, Any]] = {}
            self.idempotency: dict[str, dict[str, Any]] = {}
            self.faults: list[Fault] = []
            self.requests: list[dict[str, Any]] = []
            self.buckets: dict[tuple[str, str], Bucket] = {}

    def configure(self, values: dict[str, Any]) -> None:
        with self.lock:
            for key, value in values.items():
                if key not in self.rates:
                    raise ApiError(400, "validation_error", f"unknown setting {key!r}")
                self.rates[key] = float(value)
            self.buckets.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(
                {
                    "pages": list(self.pages.values()),
                    "emails": list(self.emails.values()),
                    "requests": self.requests,
                    "faults": [f.__dict__ for f in self.faults],
                    "config": {
                        **self.rates,
                        "database_id": self.database_id,
                        "data_source_id": self.data_source_id,
                    },
                }
            )

    # -- faults and rate limits ------------------------------------------------

    def add_faults(self, specs: list[dict[str, Any]]) -> None:
        known = set(Fault.__dataclass_fields__)
        with self.lock:
            for spec in specs:
                unknown = set(spec) - known
                if unknown or spec.get("service") not in ("notion", "resend"):
                    raise ApiError(400, "validation_error", f"bad fault {spec!r}")
                self.faults.append(Fault(**spec))

    def take_fault(self, service: str, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if not fault.matches(service, method, path):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
            return None

    def throttle(self, service: str, token: str) -> float:
        with self.lock:
            key = (service, token)
            if key not in self.buckets:
                self.buckets[key] = Bucket(
                    self.rates[f"{service}_rate"], self.rates[f"{service}_burst"]
                )
            return self.buckets[key].take()

    # -- Notion ----------------------------------------------------------------

    def notion_database(self, database_id: str) -> dict[str, Any]:
        if _plain_id(database_id) != _plain_id(self.database_id):
            raise ApiError(
                404,
                "object_not_found",
                f"Could not find database with ID: {database_id}. Make sure the relevant "
                "pages and databases are shared with your integration.",
            )
        return {
            "object": "database",
            "id": self.database_id,
            "created_time": _iso(self.created),
            "last_edited_time": _iso(self.created),
            "title": [_rich_text_item("Email Sequence")],
            "description": [],
            "icon": None,
            "cover": None,
            "parent": {"type": "workspace", "workspace": True},
            "is_inline": False,
            "in_trash": False,
            "is_locked": False,
            "url": f"https://www.notion.so/{_plain_id(self.database_id)}",
            "public_url": None,
            "data_sources": [{"id": self.data_source_id, "name": "Email Sequence"}],
        }

    def _check_data_source(self, data_source_id: str) -> None:
        if _plain_id(data_source_id) != _plain_id(self.data_source_id):
            raise ApiError(
                404, "object_not_found", f"Could not find data source with ID: {data_source_id}."
            )

    def notion_data_source(self, data_source_id: str) -> dict[str, Any]:
        self._check_data_source(data_source_id)
        return {
            "object": "data_source",
            "id": self.data_source_id,
            "created_time": _iso(self.created),
            "last_edited_time": _iso(self.created),
            "title": [_rich_text_item("Email Sequence")],
            "parent": {"type": "database_id", "database_id": self.database_id},
            "database_parent": {"type": "workspace", "workspace": True},
            "properties": {
                name: {"id": p["id"], "name": name, "type": p["type"], p["type"]: {}}
                for name, p in self.schema.items()
            },
        }

    def notion_query(self, data_source_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_data_source(data_source_id)
        page_size = body.get("page_size", 100)
        if not isinstance(page_size, int) or not 1 <= page_size <= 100:
            raise ApiError(400, "validation_error", "body.page_size should be between 1 and 100")
        with self.lock:
            pages = [p for p in self.pages.values() if not p["in_trash"]]
            if body.get("filter"):
                pages = [p for p in pages if self._matches(p, body["filter"])]
            for sort in reversed(body.get("sorts") or []):
                key = sort.get("timestamp") or sort.get("property")
                reverse = sort.get("direction") == "descending"
                pages.sort(key=lambda p, k=key: _sort_key(p, k), reverse=reverse)
            start = 0
            if body.get("start_cursor"):
                ids = [p["id"] for p in pages]
                if body["start_cursor"] not in ids:
                    raise ApiError(400, "validation_error", "start_cursor is invalid")
                start = ids.index(body["start_cursor"])
            chunk = pages[start : start + page_size]
            rest = pages[start + page_size :]
            return {
                "object": "list",
                "results": copy.deepcopy(chunk),
                "next_cursor": rest[0]["id"] if rest else None,
                "has_more": bool(rest),
                "type": "page_or_data_source",
                "page_or_data_source": {},
                "request_id": str(uuid.uuid4()),
            }

    def _matches(self, page: dict[str, Any], spec: dict[str, Any]) -> bool:
        if "and" in spec:
            return all(self._matches(page, s) for s in spec["and"])
        if "or" in spec:
            return any(self._matches(page, s) for s in spec["or"])
        name = spec.get("property")
        if name not in self.schema:
            raise ApiError(
                400, "validation_error", f"Could not find property with name or id: {name}"
            )
        prop = page["properties"][name]
        kind = prop["type"]
        conditions = spec.get(kind)
        if not isinstance(conditions, dict):
            raise ApiError(400, "validation_error", f"body.filter: {name} is a {kind} property")
        value: Any = prop[kind]
        if kind in ("title", "rich_text"):
            value = "".join(item["plain_text"] for item in value)
        elif kind == "select":
            value = value["name"] if value else None
        elif kind == "date":
            value = value["start"] if value else None
        for op, expected in conditions.items():
            if op == "equals" and value != expected:
                return False
            if op == "does_not_equal" and value == expected:
                return False
            if op == "contains" and (value is None or str(expected) not in str(value)):
                return False
            if op == "is_empty" and value not in (None, ""):
                return False
            if op == "is_not_empty" and value in (None, ""):
                return False
        return True

    def _property_values(
        self,
        given: Any,
        base: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if not isinstance(given, dict):
            raise ApiError(400, "validation_error", "body.properties should be an object")
        props = (
            copy.deepcopy(base)
            if base
            else {
                name: {"id": p["id"], "type": p["type"], p["type"]: _empty(p["type"])}
                for name, p in self.schema.items()
            }
        )
        for name, value in given.items():
            if name not in self.schema:
                raise ApiError(400, "validation_error", f"{name} is not a property that exists.")
            kind = self.schema[name]["type"]
            if not isinstance(value, dict) or kind not in value:
                raise ApiError(
                    400,
                    "validation_error",
                    f"body.properties.{name}.{kind} should be defined, instead was `undefined`.",
                )
            props[name][kind] = _normalise(name, kind, value[kind])
        return props

    def notion_create_page(self, body: dict[str, Any]) -> dict[str, Any]:
        parent = body.get("parent") or {}
        kind = parent.get("type")
        if kind == "data_source_id" or (kind is None and "data_source_id" in parent):
            self._check_data_source(str(parent.get("data_source_id", "")))
        elif kind == "database_id" or (kind is None and "database_id" in parent):
            self.notion_database(str(parent.get("database_id", "")))
        else:
            raise ApiError(400, "validation_error", "body.parent.data_source_id should be defined.")
        now = _iso(_now())
        page_id = str(uuid.uuid4())
        user = {"object": "user", "id": "00000000-0000-4000-8000-0000000000b0"}
        page = {
            "object": "page",
            "id": page_id,
            "created_time": now,
            "last_edited_time": now,
            "created_by": user,
            "last_edited_by": user,
            "cover": None,
            "icon": None,
            "parent": {
                "type": "data_source_id",
                "data_source_id": self.data_source_id,
                "database_id": self.database_id,
            },
            "archived": False,
            "in_trash": False,
            "is_locked": False,
            "properties": self._property_values(body.get("properties") or {}),
            "url": f"https://www.notion.so/{_plain_id(page_id)}",
            "public_url": None,
            "request_id": str(uuid.uuid4()),
        }
        with self.lock:
            self.pages[page_id] = page
            return copy.deepcopy(page)

    def _page(self, page_id: str) -> dict[str, Any]:
        for pid, page in self.pages.items():
            if _plain_id(pid) == _plain_id(page_id):
                return page
        raise ApiError(404, "object_not_found", f"Could not find page with ID: {page_id}.")

    def notion_get_page(self, page_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._page(page_id))

    def notion_update_page(self, page_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            page = self._page(page_id)
            if "properties" in body:
                page["properties"] = self._property_values(body["properties"], page["properties"])
            for flag in ("archived", "in_trash"):
                if flag in body:
                    page["archived"] = page["in_trash"] = bool(body[flag])
            page["last_edited_time"] = _iso(_now())
            return copy.deepcopy(page)

    # -- Resend ----------------------------------------------------------------

    def resend_send(self, body: Any, key: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(422, "validation_error", "Invalid JSON body.")
        for required in ("from", "to", "subject"):
            if not body.get(required):
                raise ApiError(422, "missing_required_field", f"Missing `{required}` field.")
        recipients = body["to"] if isinstance(body["to"], list) else [body["to"]]
        if len(recipients) > 50:
            raise ApiError(422, "validation_error", "Too many recipients (max 50).")
        for address in recipients:
            if not isinstance(address, str) or not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", address):
                raise ApiError(
                    422,
                    "validation_error",
                    f"Invalid `to` field. The email address needs to follow the "
                    f"`email@example.com` or `Name <email@example.com>` format. ({address!r})",
                )
        if not (body.get("html") or body.get("text") or body.get("template")):
            raise ApiError(422, "validation_error", "Missing `html` or `text` field.")
        scheduled_at = body.get("scheduled_at")
        if scheduled_at is not None:
            _check_scheduled_at(scheduled_at)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self.lock:
            if key is not None:
                if not 1 <= len(key) <= 256:
                    raise ApiError(
                        400,
                        "invalid_idempotency_key",
                        "The key must be between 1-256 chars.",
                    )
                seen = self.idempotency.get(key)
                if seen and _now() - seen["at"] < IDEMPOTENCY_TTL:
                    if seen["digest"] != digest:
                        raise ApiError(
                            409,
                            "invalid_idempotent_request",
                            "Same idempotency key used with a different request payload. "
                            "Change your idempotency key or payload.",
                        )
                    return {"id": seen["id"]}
            email_id = str(uuid.uuid4())
            self.emails[email_id] = {
                "object": "email",
                "id": email_id,
                "from": body["from"],
                "to": recipients,
                "subject": body["subject"],
                "html": body.get("html"),
                "text": body.get("text"),
                "cc": body.get("cc"),
                "bcc": body.get("bcc"),
                "reply_to": body.get("reply_to"),
                "created_at": _iso(_now()),
                "scheduled_at": scheduled_at,
                "last_event": "scheduled" if scheduled_at else "delivered",
                "idempotency_key": key,
            }
            if key is not None:
                self.idempotency[key] = {"digest": digest, "id": email_id, "at": _now()}
            return {"id": email_id}

    def resend_get(self, email_id: str) -> dict[str, Any]:
        with self.lock:
            if email_id not in self.emails:
                raise ApiError(404, "not_found", "Email not found")
            email = copy.deepcopy(self.emails[email_id])
            email.pop("idempotency_key", None)
            return email


def _rich_text_item(content: str) -> dict[str, Any]:
    return {
        "type": "text",
        "text": {"content": content, "link": None},
        "annotations": {
            "bold": False,
            "italic": False,
            "strikethrough": False,
            "underline": False,
            "code": False,
            "color": "default",
        },
        "plain_text": content,
        "href": None,
    }


def _empty(kind: str) -> Any:
    return [] if kind in ("title", "rich_text") else None


def _normalise(name: str, kind: str, value: Any) -> Any:
    def bad(expected: str) -> ApiError:
        return ApiError(
            400,
            "validation_error",
            f"body.properties.{name}.{kind} should be {expected}, instead was `{value!r}`.",
        )

    if kind in ("title", "rich_text"):
        if not isinstance(value, list):
            raise bad("an array")
        items = []
        for item in value:
            content = (item.get("text") or {}).get("content") if isinstance(item, dict) else None
            if not isinstance(content, str):
                raise bad("an array of text objects")
            if len(content) > 2000:
                raise bad("≤ `2000` characters long")
            items.append(_rich_text_item(content))
        return items
    if kind == "number":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad("a number or `null`")
        return value
    if kind == "email":
        if value is not None and not isinstance(value, str):
            raise bad("a string or `null`")
        return value
    if kind == "select":
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise bad("an object with a `name`")
        option = value["name"]
        return {
            "id": hashlib.sha1(option.encode()).hexdigest()[:8],
            "name": option,
            "color": "default",
        }
    if kind == "date":
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("start"), str):
            raise bad("an object with a `start`")
        try:
            datetime.fromisoformat(value["start"])
        except ValueError as exc:
            raise bad("an ISO 8601 date") from exc
        return {"start": value["start"], "end": value.get("end"), "time_zone": None}
    raise bad("supported")


def _sort_key(page: dict[str, Any], key: str) -> Any:
    if key in ("created_time", "last_edited_time"):
        return page[key]
    prop = page["properties"].get(key) or {}
    value = prop.get(prop.get("type", ""), None)
    return json.dumps(value, sort_keys=True)


def _check_scheduled_at(value: Any) -> None:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise ApiError(
            422,
            "validation_error",
            "Invalid `scheduled_at` field. The date must be in ISO 8601 format.",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = _now()
    if when <= now:
        raise ApiError(422, "validation_error", "`scheduled_at` must be in the future.")
    if when - now > MAX_SCHEDULE_AHEAD:
        raise ApiError(
            422, "validation_error", "`scheduled_at` cannot be more than 30 days in the future."
        )


NOTION_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/v1/databases/([^/]+)$"), "database"),
    ("GET", re.compile(r"^/v1/data_sources/([^/]+)$"), "data_source"),
    ("POST", re.compile(r"^/v1/data_sources/([^/]+)/query$"), "query"),
    ("POST", re.compile(r"^/v1/pages$"), "create_page"),
    ("GET", re.compile(r"^/v1/pages/([^/]+)$"), "get_page"),
    ("PATCH", re.compile(r"^/v1/pages/([^/]+)$"), "update_page"),
]
RESEND_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/emails$"), "send"),
    ("GET", re.compile(r"^/emails/([^/]+)$"), "get"),
]


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the fake Notion, the fake Resend or the control endpoints."""

    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing --------------------------------------------------------------

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        return json.loads(raw)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        try:
            body = self._body()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if path.startswith("/_fake/"):
            self._control(method, path, body)
        elif path.startswith("/v1/"):
            self._api("notion", method, path, body)
        elif path.startswith("/emails"):
            self._api("resend", method, path, body)
        else:
            self._send(404, {"error": f"no route for {method} {path}"})

    def _control(self, method: str, path: str, body: Any) -> None:
        state = self.server.state
        try:
            if method == "GET" and path == "/_fake/health":
                self._send(200, {"ok": True})
            elif method == "GET" and path == "/_fake/state":
                self._send(200, state.snapshot())
            elif method == "POST" and path == "/_fake/reset":
                state.reset()
                self._send(200, {"ok": True})
            elif method == "POST" and path == "/_fake/faults":
                specs = body if isinstance(body, list) else [body]
                state.add_faults(specs)
                self._send(200, {"ok": True, "faults": len(state.faults)})
            elif method == "POST" and path == "/_fake/config" and isinstance(body, dict):
                state.configure(body)
                self._send(200, {"ok": True, "config": state.rates})
            else:
                self._send(404, {"error": f"no route for {method} {path}"})
        except (ApiError, TypeError, ValueError) as exc:
            self._send(400, {"error": str(exc)})

    def _api(self, service: str, method: str, path: str, body: Any) -> None:
        state = self.server.state
        key = self.headers.get("Idempotency-Key")
        try:
            token = self._authenticate(service)
            fault = state.take_fault(service, method, path)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.status is not None:
                    headers = {}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = f"{fault.retry_after:g}"
                    raise ApiError(
                        fault.status, _code_for(service, fault.status), "Injected fault", headers
                    )
            wait = state.throttle(service, token)
            if wait > 0:
                raise ApiError(
                    429,
                    "rate_limited" if service == "notion" else "rate_limit_exceeded",
                    "You have been rate limited. Please try again in a few minutes."
                    if service == "notion"
                    else "Too many requests. You can only make "
                    f"{state.rates['resend_rate']:g} requests per second.",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
            if body is None:
                raise ApiError(400, "invalid_json", "Error parsing JSON body.")
            status, payload = 200, self._route(service, method, path, body, key)
            headers: dict[str, str] = {}
        except ApiError as exc:
            status, headers = exc.status, exc.headers
            if service == "notion":
                payload = {
                    "object": "error",
                    "status": exc.status,
                    "code": exc.code,
                    "message": exc.message,
                    "request_id": str(uuid.uuid4()),
                }
            else:
                payload = {"statusCode": exc.status, "name": exc.code, "message": exc.message}
        with state.lock:
            state.requests.append(
                {
                    "service": service,
                    "method": method,
                    "path": path,
                    "status": status,
                    "idempotency_key": key,
                    "at": _iso(_now()),
                }
            )
        self._send(status, payload, headers)

    def _authenticate(self, service: str) -> str:
        state = self.server.state
        auth = self.headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if service == "notion":
            if token != state.notion_token:
                raise ApiError(401, "unauthorized", "API token is invalid.")
            if not self.headers.get("Notion-Version"):
                raise ApiError(
                    400,
                    "missing_version",
                    "Notion-Version header failed validation: Notion-Version header should be "
                    "defined, instead was `undefined`.",
                )
        elif not token:
            raise ApiError(401, "missing_api_key", "Missing API key in the authorization header.")
        elif token != state.resend_api_key:
            raise ApiError(403, "invalid_api_key", "API key is invalid")
        return token

    def _route(self, service: str, method: str, path: str, body: Any, key: str | None) -> Any:
        state = self.server.state
        routes = NOTION_ROUTES if service == "notion" else RESEND_ROUTES
        for route_method, pattern, name in routes:
            match = pattern.match(path)
            if not match:
                continue
            if route_method != method:
                continue
            arg = match.group(1) if match.groups() else None
            if service == "notion":
                if name == "database":
                    return state.notion_database(arg or "")
                if name == "data_source":
                    return state.notion_data_source(arg or "")
                if name == "query":
                    return state.notion_query(arg or "", body)
                if name == "create_page":
                    return state.notion_create_page(body)
                if name == "get_page":
                    return state.notion_get_page(arg or "")
                return state.notion_update_page(arg or "", body)
            if name == "send":
                return state.resend_send(body, key)
            return state.resend_get(arg or "")
        if service == "notion":
            raise ApiError(400, "invalid_request_url", "Invalid request URL.")
        raise ApiError(404, "not_found", "The requested endpoint does not exist.")


def _code_for(service: str, status: int) -> str:
    notion = {
        400: "validation_error",
        401: "unauthorized",
        403: "restricted_resource",
        404: "object_not_found",
        409: "conflict_error",
        429: "rate_limited",
        500: "internal_server_error",
        502: "bad_gateway",
        503: "service_unavailable",
        504: "gateway_timeout",
    }
    resend = {
        400: "validation_error",
        401: "missing_api_key",
        403: "invalid_api_key",
        404: "not_found",
        409: "invalid_idempotent_request",
        422: "validation_error",
        429: "rate_limit_exceeded",
    }
    table = notion if service == "notion" else resend
    if status in table:
        return table[status]
    return "internal_server_error" if status >= 500 else HTTPStatus(status).phrase.lower()


class FakeServer(ThreadingHTTPServer):
    """The HTTP server; ``state`` is the :class:`FakeSaaS` it serves."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: FakeSaaS, verbose: bool = False) -> None:
        super().__init__(address, Handler)
        self.state = state
        self.verbose = verbose

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(
    host: str = "127.0.0.1", port: int = 0, verbose: bool = False, **config: Any
) -> FakeServer:
    """A ready-to-serve fake; ``config`` goes to :class:`FakeSaaS`."""
    return FakeServer((host, port), FakeSaaS(**config), verbose=verbose)
