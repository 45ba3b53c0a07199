"""The fake Cloudflare Turnstile siteverify API (``POST /turnstile/v0/siteverify``).

As documented by Cloudflare: the body is form-encoded or JSON with ``secret``,
``response`` (the widget's token, at most 2048 characters), optional ``remoteip`` and
``idempotency_key``; the answer is always JSON, ``{"success": true, "error-codes": [],
"challenge_ts", "hostname", "action", "cdata"}`` or ``{"success": false, "error-codes":
[...]}``. A token is valid for 300 s and can be redeemed once: a second redemption (or a
late one) answers ``timeout-or-duplicate``, unless it repeats the first one's
``idempotency_key``, which answers the first result again. Cloudflare's test secrets
behave as documented whatever the token: ``1x0000000000000000000000000000000AA`` always
passes, ``2x0000000000000000000000000000000AA`` always fails, and
``3x0000000000000000000000000000000AA`` answers ``timeout-or-duplicate``.

Tokens are what a solved widget would put in the form: ``POST /_fake/turnstile/tokens``
(optionally ``{"hostname", "action", "cdata", "age"}``, ``age`` in seconds to make an
old token) answers ``{"token": ...}``.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from .common import iso, now

DEFAULT_TURNSTILE_SECRET = "0x4AAAAAAAfakeTurnstileSecretKey"
TEST_SECRETS = {
    "1x0000000000000000000000000000000AA": [],
    "2x0000000000000000000000000000000AA": ["invalid-input-response"],
    "3x0000000000000000000000000000000AA": ["timeout-or-duplicate"],
}
TOKEN_LIFETIME = timedelta(seconds=300)
MAX_TOKEN_LENGTH = 2048


class TurnstileApi:
    """Mixin for :class:`fake_saas.server.FakeSaaS`: issued tokens and their redemptions."""

    lock: Any
    turnstile_secret: str
    tokens: dict[str, dict[str, Any]]
    redemptions: dict[tuple[str, str], dict[str, Any]]

    def turnstile_issue(self, spec: dict[str, Any]) -> dict[str, Any]:
        token = "0." + secrets.token_urlsafe(96)
        with self.lock:
            self.tokens[token] = {
                "issued": now() - timedelta(seconds=float(spec.get("age", 0))),
                "hostname": str(spec.get("hostname", "galatek.dev")),
                "action": str(spec.get("action", "")),
                "cdata": str(spec.get("cdata", "")),
                "redeemed": False,
            }
        return {"token": token}

    def turnstile_siteverify(self, body: dict[str, Any]) -> dict[str, Any]:
        secret = body.get("secret")
        token = body.get("response")
        key = body.get("idempotency_key")
        if not isinstance(secret, str) or not secret:
            return _failure("missing-input-secret")
        if secret in TEST_SECRETS:
            codes = TEST_SECRETS[secret]
            return _failure(*codes) if codes else _success(now(), "example.com", "", "")
        if secret != self.turnstile_secret:
            return _failure("invalid-input-secret")
        if not isinstance(token, str) or not token:
            return _failure("missing-input-response")
        with self.lock:
            if isinstance(key, str) and (token, key) in self.redemptions:
                return self.redemptions[(token, key)]
            issued = self.tokens.get(token)
            if issued is None or len(token) > MAX_TOKEN_LENGTH:
                return _failure("invalid-input-response")
            if issued["redeemed"] or now() - issued["issued"] > TOKEN_LIFETIME:
                return _failure("timeout-or-duplicate")
            issued["redeemed"] = True
            answer = _success(
                issued["issued"], issued["hostname"], issued["action"], issued["cdata"]
            )
            if isinstance(key, str):
                self.redemptions[(token, key)] = answer
            return answer


def _success(issued: datetime, hostname: str, action: str, cdata: str) -> dict[str, Any]:
    return {
        "success": True,
        "error-codes": [],
        "challenge_ts": iso(issued),
        "hostname": hostname,
        "action": action,
        "cdata": cdata,
    }


def _failure(*codes: str) -> dict[str, Any]:
    return {"success": False, "error-codes": list(codes)}
