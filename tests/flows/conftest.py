"""Fixtures for the signup flow tests.

* ``prefect_harness``: one temporary Prefect server for the session
  (``prefect_test_harness``); flows and tasks run against it for real.
* ``fake_saas``: the fake Notion + Resend server on a free port in a thread,
  over real HTTP; yields a :class:`Fake` with its base URL and helpers.
* ``signup_env``: the worker environment pointed at the fake (via monkeypatch),
  with short retry delays so retry tests stay fast, and the per-address locks the
  deploy creates (the flow refuses to run without its lock).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from christmas_signup import privacy
from christmas_signup.resilience import CONCURRENCY_LIMITS
from fake_saas import (
    DEFAULT_DATABASE_ID,
    DEFAULT_NOTION_TOKEN,
    DEFAULT_RESEND_API_KEY,
    make_server,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.testing.utilities import prefect_test_harness

ROOT = Path(__file__).resolve().parents[2]
SENDER = "Galatek <hello@galatek.dev>"


class Fake:
    """A running fake server and a small client for its control endpoints."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def state(self) -> dict[str, Any]:
        return self.call("GET", "/_fake/state")

    def reset(self) -> None:
        self.call("POST", "/_fake/reset")

    def faults(self, *specs: dict[str, Any]) -> None:
        self.call("POST", "/_fake/faults", list(specs))

    def config(self, **values: float) -> None:
        self.call("POST", "/_fake/config", values)

    def requests(self, service: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.state()["requests"] if service in (None, r["service"])]


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


#: The deploy's per-address locks (one slot, no decay); the rate limits are per test.
SIGNUP_LOCKS = [limit for limit in CONCURRENCY_LIMITS if not limit["slot_decay_per_second"]]


@pytest.fixture(scope="session")
def signup_locks(prefect_harness: None) -> list[dict[str, Any]]:
    with get_client(sync_client=True) as client:
        for limit in SIGNUP_LOCKS:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(**limit))
    return SIGNUP_LOCKS


@pytest.fixture(scope="session")
def _fake_server() -> Iterator[Fake]:
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Fake(server.base_url)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_saas(_fake_server: Fake) -> Fake:
    """The fake, reset, with its rate limits off (tests that need them turn them on)."""
    _fake_server.reset()
    _fake_server.config(notion_rate=0, resend_rate=0)
    return _fake_server


@pytest.fixture
def signup_env(
    fake_saas: Fake, signup_locks: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> Fake:
    monkeypatch.setenv("NOTION_TOKEN", DEFAULT_NOTION_TOKEN)
    monkeypatch.setenv("NOTION_DATABASE_ID", DEFAULT_DATABASE_ID)
    monkeypatch.setenv("RESEND_API_KEY", DEFAULT_RESEND_API_KEY)
    monkeypatch.setenv("RESEND_FROM", SENDER)
    monkeypatch.setenv("NOTION_BASE_URL", fake_saas.base_url)
    monkeypatch.setenv("RESEND_BASE_URL", fake_saas.base_url)
    monkeypatch.setenv("SIGNUP_RETRY_BASE_SECONDS", "0.1")
    monkeypatch.setenv("SIGNUP_RETRIES", "3")
    monkeypatch.delenv("NOTION_PROPERTIES", raising=False)
    return fake_saas


# The example signup (tests/data/signup.yml), the one copy every test sends.
EXAMPLE_SIGNUP: dict[str, Any] = yaml.safe_load((ROOT / "tests/data/signup.yml").read_text())
# As a person may type it: the flow lower-cases the address.
TYPED_EMAIL = "Ada@Example.COM"


def signup_params(**overrides: Any) -> dict[str, Any]:
    """The example signup (segment: critical) with the address as typed, and overrides."""
    return {**EXAMPLE_SIGNUP, "email": TYPED_EMAIL, **overrides}


@pytest.fixture
def no_suppressions(prefect_harness: None) -> Iterator[None]:
    """Remove the suppression entries a test made (the harness outlives the test)."""
    yield
    with get_client(sync_client=True) as client:
        for variable in client.read_variables():
            if privacy.SUPPRESSION_TAG in variable.tags:
                client.delete_variable_by_name(variable.name)
