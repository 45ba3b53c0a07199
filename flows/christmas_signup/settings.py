"""Secrets and runtime settings for the signup flow.

Secrets are read from the worker's environment first, then from Prefect
Secret blocks:

=====================  ======================  ===============================
setting                environment variable    Prefect Secret block
=====================  ======================  ===============================
Notion token           ``NOTION_TOKEN``        ``notion-token``
Notion database id     ``NOTION_DATABASE_ID``  ``notion-database-id``
Resend API key         ``RESEND_API_KEY``      ``resend-api-key``
Sender address         ``RESEND_FROM``         ``resend-from``
=====================  ======================  ===============================

A missing secret fails the run at once with :class:`MissingSecretError`,
naming it, before any HTTP call to Notion or Resend.

Optional environment:

* ``NOTION_BASE_URL`` (default ``https://api.notion.com``; the SDK adds ``/v1``)
* ``RESEND_BASE_URL`` (default ``https://api.resend.com``)
* ``NOTION_PROPERTIES``: JSON object overriding Notion property names, keyed
  as in :data:`christmas_signup.notion.DEFAULT_PROPERTIES`,
  e.g. ``{"business": "Company"}``
* ``SIGNUP_RETRY_BASE_SECONDS`` (default ``2``): first retry delay of the API
  tasks; later retries double it (exponential back-off with jitter)
* ``SIGNUP_RETRIES`` (default ``4``): retries per API task
* ``SIGNUP_MAX_RETRY_AFTER_SECONDS`` (default ``60``): the longest ``Retry-After``
  waited out inside a task; a longer one ends the run as transient and the recovery
  runs it again after that time
* ``SIGNUP_LOCK_TIMEOUT_SECONDS`` (default ``600``): how long a run waits for
  its address's ``signup-lock-<n>``; then it fails as transient and the
  recovery runs it again
* ``SIGNUP_HTTP_TIMEOUT_SECONDS`` (default ``30``): timeout of one Notion or Resend
  request
* ``NOTION_QUERY_LAG_SECONDS`` (default ``10``): how long Notion's query may miss a page
  just created (see ``notion.py``)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from pydantic import SecretStr

DEFAULT_NOTION_BASE_URL = "https://api.notion.com"
DEFAULT_RESEND_BASE_URL = "https://api.resend.com"

# (environment variable, Prefect Secret block name)
SECRET_SOURCES: dict[str, tuple[str, str]] = {
    "notion_token": ("NOTION_TOKEN", "notion-token"),
    "notion_database_id": ("NOTION_DATABASE_ID", "notion-database-id"),
    "resend_api_key": ("RESEND_API_KEY", "resend-api-key"),
    "resend_from": ("RESEND_FROM", "resend-from"),
}


class MissingSecretError(RuntimeError):
    """A required secret is neither in the environment nor in a Secret block."""


@dataclass(frozen=True)
class Settings:
    """Everything the flow needs to talk to Notion and Resend."""

    notion_token: SecretStr
    notion_database_id: str
    resend_api_key: SecretStr
    resend_from: str
    notion_base_url: str = DEFAULT_NOTION_BASE_URL
    resend_base_url: str = DEFAULT_RESEND_BASE_URL
    notion_properties: dict[str, str] = field(default_factory=dict)


def _from_block(block_name: str) -> str | None:
    """Value of a Prefect Secret block, or None when it does not exist."""
    from prefect.blocks.system import Secret  # noqa: PLC0415 - keeps imports light

    try:
        value = Secret.load(block_name, _sync=True).get()  # type: ignore[call-arg]
    except (ValueError, LookupError):
        return None
    return str(value).strip() or None


def lookup_secret(name: str) -> str | None:
    """One secret from the environment, else its Secret block, else None."""
    env_var, block_name = SECRET_SOURCES[name]
    value = os.environ.get(env_var, "").strip()
    if value:
        return value
    return _from_block(block_name)


def secrets_present() -> dict[str, bool]:
    """Which secrets are available, keyed by environment variable name."""
    return {env: lookup_secret(name) is not None for name, (env, _) in SECRET_SOURCES.items()}


def notion_property_overrides() -> dict[str, str]:
    """Property-name overrides from ``NOTION_PROPERTIES`` (a JSON object)."""
    raw = os.environ.get("NOTION_PROPERTIES", "").strip()
    if not raw:
        return {}
    parsed = json.loads(raw)
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise ValueError("NOTION_PROPERTIES must be a JSON object of strings")
    return parsed


def load_settings() -> Settings:
    """Read all secrets and settings; raise MissingSecretError naming every gap."""
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, (env_var, block_name) in SECRET_SOURCES.items():
        value = lookup_secret(name)
        if value is None:
            missing.append(f"{env_var} (or Secret block {block_name!r})")
        else:
            values[name] = value
    if missing:
        raise MissingSecretError("missing secret: " + ", ".join(missing))
    return Settings(
        notion_token=SecretStr(values["notion_token"]),
        notion_database_id=values["notion_database_id"],
        resend_api_key=SecretStr(values["resend_api_key"]),
        resend_from=values["resend_from"],
        notion_base_url=os.environ.get("NOTION_BASE_URL", "").strip().rstrip("/")
        or DEFAULT_NOTION_BASE_URL,
        resend_base_url=os.environ.get("RESEND_BASE_URL", "").strip().rstrip("/")
        or DEFAULT_RESEND_BASE_URL,
        notion_properties=notion_property_overrides(),
    )


def env_float(name: str, default: float) -> float:
    """A float from the environment, or the default."""
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def env_int(name: str, default: int) -> int:
    """An int from the environment, or the default."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default
