"""Injected failures and the per-token rate limits (token buckets)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


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
    """A queued failure (see the README's "Faults").

    ``after``: the request is handled first (a page is created, an email sent), then the
    fault answers instead of the real answer: the work is done and its answer lost.
    ``drop``: the connection is closed without an answer. ``delay`` with ``status: null``
    after the work is a late answer (a client with a shorter timeout gives up).
    ``name``/``message`` replace the error's code (Notion ``code``, Resend ``name``) and
    message; ``body`` replaces the whole JSON answer.
    """

    service: str
    status: int | None = 500
    count: int = 1
    skip: int = 0
    method: str | None = None
    path: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    seconds: float | None = None
    after: bool = False
    drop: bool = False
    name: str | None = None
    message: str | None = None
    body: Any = None
    added: float = field(default_factory=time.monotonic)

    def expired(self) -> bool:
        """A fault with ``seconds`` answers every matching request for that long."""
        return self.seconds is not None and time.monotonic() - self.added > self.seconds

    def matches(self, service: str, method: str, path: str) -> bool:
        return (
            self.service == service
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or path.startswith(self.path))
        )
