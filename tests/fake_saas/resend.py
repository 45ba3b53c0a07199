"""The fake Resend API: send (with Idempotency-Key) and retrieve emails.

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
    resend_domains: dict[str, str] | None

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
            if not isinstance(address, str) or _address(address) is None:
                raise ApiError(
                    422,
                    "validation_error",
                    f"Invalid `to` field. The email address needs to follow the "
                    f"`email@example.com` or `Name <email@example.com>` format. ({address!r})",
                )
        if not (body.get("html") or body.get("text") or body.get("template")):
            raise ApiError(422, "validation_error", "Missing `html` or `text` field.")
        self._check_sender(body["from"])
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
            self._check_quota()
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
        """``POST /emails/{id}/cancel``: a scheduled email is not sent."""
        with self.lock:
            email = self.emails.get(email_id)
            if email is None:
                raise ApiError(404, "not_found", "Email not found")
            if email["last_event"] != "scheduled":
                raise ApiError(422, "validation_error", "Only scheduled emails can be canceled.")
            email["last_event"] = "canceled"
            return {"object": "email", "id": email_id}

    def resend_domains_list(self) -> dict[str, Any]:
        """``GET /domains``: the team's domains and their verification status."""
        domains = self.resend_domains or {}
        return {
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                    "name": name,
                    "status": status,
                    "created_at": iso(now()),
                    "region": "us-east-1",
                }
                for name, status in sorted(domains.items())
            ],
        }

    def _check_sender(self, sender: Any) -> None:
        """403 unless the sender's domain is verified (no domain list: every one is)."""
        address = _address(sender) if isinstance(sender, str) else None
        if address is None:
            raise ApiError(
                422,
                "validation_error",
                "Invalid `from` field. The email address needs to follow the "
                "`email@example.com` or `Name <email@example.com>` format.",
            )
        domain = address.rpartition("@")[2].lower()
        if self.resend_domains is not None and self.resend_domains.get(domain) != "verified":
            raise ApiError(
                403,
                "validation_error",
                f"The {domain} domain is not verified. Please, add and verify your domain "
                "on https://resend.com/domains",
            )

    def _check_quota(self) -> None:
        """429 daily_quota_exceeded once the last 24 h hold ``resend_daily_quota`` emails."""
        quota = self.rates["resend_daily_quota"]
        if quota <= 0:
            return
        with self.lock:
            since = iso(now() - timedelta(days=1))
            sent = sum(1 for e in self.emails.values() if e["created_at"] > since)
        if sent >= quota:
            raise ApiError(
                429, "daily_quota_exceeded", "You have reached your daily email sending quota."
            )


def _address(value: str) -> str | None:
    """The address of ``a@b.c`` or ``Name <a@b.c>``, or None."""
    match = re.fullmatch(r"(?:[^<>]*<([^@\s<>]+@[^@\s<>]+)>|([^@\s<>]+@[^@\s<>]+))", value.strip())
    return (match.group(1) or match.group(2)) if match else None


_UNITS = {"min": 60, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def _natural(value: str) -> datetime | None:
    """``in N min|minutes|hour(s)|day(s)|week(s)`` from now (the part of Resend's natural
    language the fake understands; Resend documents no grammar)."""
    match = re.fullmatch(r"in (\d+) (min|minute|hour|day|week)s?", value.strip().lower())
    if not match:
        return None
    return now() + timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _check_scheduled_at(value: Any) -> None:
    when = _natural(str(value))
    try:
        when = when or datetime.fromisoformat(str(value))
    except ValueError:
        raise ApiError(
            422,
            "validation_error",
            "Invalid `scheduled_at` field. The date must be in ISO 8601 format or natural "
            "language (e.g. `in 1 min`).",
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
    ("GET", re.compile(r"^/domains$"), "domains"),
]
