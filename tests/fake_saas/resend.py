"""The fake Resend API: send (with Idempotency-Key), retrieve and cancel emails.

A mixin of :class:`fake_saas.server.FakeSaaS`: it uses the state's ``lock``,
``emails`` and ``idempotency``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import ApiError, iso, now

IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_SCHEDULE_AHEAD = timedelta(days=30)


class ResendApi:
    """Resend's endpoints, on the state of :class:`fake_saas.server.FakeSaaS`."""

    lock: Any
    emails: dict[str, dict[str, Any]]
    idempotency: dict[str, dict[str, Any]]
    in_progress: set[str]
    rates: dict[str, float]

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
        if key is not None:
            if not 1 <= len(key) <= 256:
                raise ApiError(
                    400, "invalid_idempotency_key", "The key must be between 1-256 chars."
                )
            replay = self._claim_key(key, digest)
            if replay is not None:
                return replay
        try:
            # The time Resend takes to accept an email: a second request with the same
            # key meanwhile is answered 409 concurrent_idempotent_requests.
            time.sleep(self.rates["resend_processing_seconds"])
            with self.lock:
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
                    "created_at": iso(now()),
                    "scheduled_at": scheduled_at,
                    "last_event": "scheduled" if scheduled_at else "delivered",
                    "idempotency_key": key,
                }
                if key is not None:
                    self.idempotency[key] = {"digest": digest, "id": email_id, "at": now()}
                return {"id": email_id}
        finally:
            if key is not None:
                with self.lock:
                    self.in_progress.discard(key)

    def _claim_key(self, key: str, digest: str) -> dict[str, Any] | None:
        """Mark ``key`` in progress; return the original answer when it was used already.

        As Resend documents: the same key with the same payload within 24 h answers
        the original email's id, with another payload 409 ``invalid_idempotent_request``
        (not retryable), and while the first request is still in progress 409
        ``concurrent_idempotent_requests`` (retry later).
        """
        with self.lock:
            if key in self.in_progress:
                raise ApiError(
                    409,
                    "concurrent_idempotent_requests",
                    "Same idempotency key used while original request is still in progress.",
                )
            seen = self.idempotency.get(key)
            if seen and now() - seen["at"] < IDEMPOTENCY_TTL:
                if seen["digest"] != digest:
                    raise ApiError(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload. "
                        "Change your idempotency key or payload.",
                    )
                return {"id": seen["id"]}
            self.in_progress.add(key)
            return None

    def resend_get(self, email_id: str) -> dict[str, Any]:
        with self.lock:
            if email_id not in self.emails:
                raise ApiError(404, "not_found", "Email not found")
            email = copy.deepcopy(self.emails[email_id])
            email.pop("idempotency_key", None)
            return email

    def resend_cancel(self, email_id: str) -> dict[str, Any]:
        """``POST /emails/{id}/cancel``: a scheduled email becomes ``canceled`` and is never
        sent; Resend answers ``{"object": "email", "id": ...}``. Cancelling an email that is
        no longer scheduled is refused (422 here; Resend does not document its code)."""
        with self.lock:
            if email_id not in self.emails:
                raise ApiError(404, "not_found", "Email not found")
            email = self.emails[email_id]
            if email["last_event"] != "scheduled":
                raise ApiError(422, "validation_error", "Only scheduled emails can be canceled.")
            email["last_event"] = "canceled"
            return {"object": "email", "id": email_id}


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
    current = now()
    if when <= current:
        raise ApiError(422, "validation_error", "`scheduled_at` must be in the future.")
    if when - current > MAX_SCHEDULE_AHEAD:
        raise ApiError(
            422, "validation_error", "`scheduled_at` cannot be more than 30 days in the future."
        )


RESEND_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/emails$"), "send"),
    ("GET", re.compile(r"^/emails/([^/]+)$"), "get"),
    ("POST", re.compile(r"^/emails/([^/]+)/cancel$"), "cancel"),
]
