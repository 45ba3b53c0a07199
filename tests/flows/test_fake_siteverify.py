"""The fake Turnstile siteverify follows Cloudflare's documented behaviour: single-use
tokens valid 300 s, form or JSON bodies, idempotent retries, the documented test secrets."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

from fake_saas import DEFAULT_TURNSTILE_SECRET

SITEVERIFY = "/turnstile/v0/siteverify"


def verify(fake, form: bool = False, **fields: Any) -> dict[str, Any]:
    if form:
        data = urllib.parse.urlencode(fields).encode()
        kind = "application/x-www-form-urlencoded"
    else:
        data, kind = json.dumps(fields).encode(), "application/json"
    request = urllib.request.Request(
        fake.base_url + SITEVERIFY, data=data, method="POST", headers={"Content-Type": kind}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200  # the verdict is in the JSON, never in the status
        return json.loads(response.read())


def token(fake, **spec: Any) -> str:
    return fake.call("POST", "/_fake/turnstile/tokens", spec)["token"]


def test_a_token_is_redeemed_once(fake_saas):
    issued = token(fake_saas, hostname="galatek.dev", action="signup")
    first = verify(
        fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response=issued, remoteip="192.0.2.1"
    )
    assert first["success"] is True
    assert first["error-codes"] == []
    assert (first["hostname"], first["action"], first["cdata"]) == ("galatek.dev", "signup", "")
    assert first["challenge_ts"].endswith("Z")
    again = verify(fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response=issued)
    assert again == {"success": False, "error-codes": ["timeout-or-duplicate"]}


def test_a_form_encoded_request_is_answered_in_json(fake_saas):
    answer = verify(
        fake_saas, form=True, secret=DEFAULT_TURNSTILE_SECRET, response=token(fake_saas)
    )
    assert answer["success"] is True


def test_a_retry_with_the_same_idempotency_key_gets_the_same_answer(fake_saas):
    issued = token(fake_saas)
    key = "6f6e1a0e-2c1b-4d3e-9f8a-7b6c5d4e3f2a"
    first = verify(fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response=issued, idempotency_key=key)
    again = verify(fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response=issued, idempotency_key=key)
    assert first["success"] is True
    assert again == first
    other = verify(
        fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response=issued, idempotency_key="other"
    )
    assert other["error-codes"] == ["timeout-or-duplicate"]


def test_a_token_older_than_300_seconds_has_expired(fake_saas):
    answer = verify(fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response=token(fake_saas, age=301))
    assert answer == {"success": False, "error-codes": ["timeout-or-duplicate"]}


def test_missing_and_wrong_inputs_are_named(fake_saas):
    issued = token(fake_saas)
    assert verify(fake_saas, response=issued)["error-codes"] == ["missing-input-secret"]
    assert verify(fake_saas, secret="0x4wrong", response=issued)["error-codes"] == [
        "invalid-input-secret"
    ]
    assert verify(fake_saas, secret=DEFAULT_TURNSTILE_SECRET)["error-codes"] == [
        "missing-input-response"
    ]
    assert verify(fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response="forged")["error-codes"] == [
        "invalid-input-response"
    ]
    # None of these spent the token.
    assert verify(fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response=issued)["success"] is True


def test_cloudflares_test_secrets(fake_saas):
    dummy = "XXXX.DUMMY.TOKEN.XXXX"
    passes = verify(fake_saas, secret="1x0000000000000000000000000000000AA", response=dummy)
    assert passes["success"] is True
    assert verify(fake_saas, secret="1x0000000000000000000000000000000AA", response=dummy)[
        "success"
    ]  # always, not once
    fails = verify(fake_saas, secret="2x0000000000000000000000000000000AA", response=dummy)
    assert fails == {"success": False, "error-codes": ["invalid-input-response"]}
    spent = verify(fake_saas, secret="3x0000000000000000000000000000000AA", response=dummy)
    assert spent == {"success": False, "error-codes": ["timeout-or-duplicate"]}


def test_each_verification_is_logged(fake_saas):
    verify(fake_saas, secret=DEFAULT_TURNSTILE_SECRET, response="forged")
    [logged] = fake_saas.requests("turnstile")
    assert (logged["success"], logged["error-codes"]) == (False, ["invalid-input-response"])
