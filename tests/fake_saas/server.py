"""The fake's HTTP server: its state, routing, authentication, faults and control endpoints."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from .common import (
    DEFAULT_DATA_SOURCE_ID,
    DEFAULT_DATABASE_ID,
    DEFAULT_NOTION_TOKEN,
    DEFAULT_RESEND_API_KEY,
    ApiError,
    iso,
    now,
)
from .faults import Bucket, Fault
from .notion import DEFAULT_SCHEMA, NOTION_ROUTES, NotionApi
from .resend import RESEND_ROUTES, ResendApi
from .turnstile import DEFAULT_TURNSTILE_SECRET, TurnstileApi


class FakeSaaS(NotionApi, ResendApi, TurnstileApi):
    """State of the fake services. All access goes through ``lock``."""

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
        turnstile_secret: str = DEFAULT_TURNSTILE_SECRET,
    ) -> None:
        self.lock = threading.RLock()
        self.turnstile_secret = turnstile_secret
        self.notion_token = notion_token
        self.resend_api_key = resend_api_key
        self.database_id = database_id
        self.data_source_id = data_source_id
        self.rates = {
            "notion_rate": notion_rate,
            "notion_burst": notion_burst,
            "resend_rate": resend_rate,
            "resend_burst": resend_burst,
            "resend_processing_seconds": 0.0,
        }
        self.schema = {
            name: {"id": hashlib.sha1(name.encode()).hexdigest()[:4], "type": kind}
            for name, kind in DEFAULT_SCHEMA.items()
        }
        self.created = now()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.pages: dict[str, dict[str, Any]] = {}
            self.emails: dict[str, dict[str, Any]] = {}
            self.idempotency: dict[str, dict[str, Any]] = {}
            self.in_progress: set[str] = set()
            self.webhooks: list[dict[str, Any]] = []
            self.faults: list[Fault] = []
            self.requests: list[dict[str, Any]] = []
            self.buckets: dict[tuple[str, str], Bucket] = {}
            self.tokens: dict[str, dict[str, Any]] = {}
            self.redemptions: dict[tuple[str, str], dict[str, Any]] = {}

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
                    "webhooks": self.webhooks,
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
        known = set(Fault.__dataclass_fields__) - {"added"}
        with self.lock:
            for spec in specs:
                unknown = set(spec) - known
                if unknown or spec.get("service") not in ("notion", "resend"):
                    raise ApiError(400, "validation_error", f"bad fault {spec!r}")
                self.faults.append(Fault(**spec))

    def take_fault(self, service: str, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in list(self.faults):
                if not fault.matches(service, method, path):
                    continue
                if fault.seconds is not None:
                    if fault.expired():
                        self.faults.remove(fault)
                        continue
                    return fault
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
        if self.headers.get_content_type() == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode(), keep_blank_values=True))
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
        elif path.startswith("/services/") and method == "POST":
            self._webhook(path, body)
        elif path == "/turnstile/v0/siteverify" and method == "POST":
            self._siteverify(path, body)
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
            elif method == "POST" and path == "/_fake/turnstile/tokens":
                self._send(200, state.turnstile_issue(body if isinstance(body, dict) else {}))
            elif method == "POST" and path == "/_fake/config" and isinstance(body, dict):
                state.configure(body)
                self._send(200, {"ok": True, "config": state.rates})
            else:
                self._send(404, {"error": f"no route for {method} {path}"})
        except (ApiError, TypeError, ValueError) as exc:
            self._send(400, {"error": str(exc)})

    def _webhook(self, path: str, body: Any) -> None:
        """A Slack-style incoming webhook (``POST /services/...`` with ``{"text": ...}``).

        Slack answers 200 with the plain-text body ``ok``, and 400 ``invalid_payload``
        when the JSON is missing or has no ``text``.
        """
        state = self.server.state
        valid = isinstance(body, dict) and isinstance(body.get("text"), str) and body["text"]
        with state.lock:
            if valid:
                state.webhooks.append({"path": path, "body": body, "at": iso(now())})
            state.requests.append(
                {
                    "service": "webhook",
                    "method": "POST",
                    "path": path,
                    "status": 200 if valid else 400,
                    "idempotency_key": None,
                    "at": iso(now()),
                }
            )
        data = b"ok" if valid else b"invalid_payload"
        self.send_response(200 if valid else 400)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _siteverify(self, path: str, body: Any) -> None:
        """Cloudflare Turnstile's siteverify: always 200 and JSON, the verdict inside."""
        state = self.server.state
        answer = state.turnstile_siteverify(body if isinstance(body, dict) else {})
        with state.lock:
            state.requests.append(
                {
                    "service": "turnstile",
                    "method": "POST",
                    "path": path,
                    "status": 200,
                    "idempotency_key": (body or {}).get("idempotency_key"),
                    "success": answer["success"],
                    "error-codes": answer["error-codes"],
                    "at": iso(now()),
                }
            )
        self._send(200, answer)

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
                    "at": iso(now()),
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
            if name == "cancel":
                return state.resend_cancel(arg or "")
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
        409: "concurrent_idempotent_requests",
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
