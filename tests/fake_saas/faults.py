"""Injected failures and the per-token rate limits (token buckets)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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
    seconds: float | None = None
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
