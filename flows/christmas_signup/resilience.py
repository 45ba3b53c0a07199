"""Retry policy and shared rate limits for the Notion and Resend calls.

* Each API call is its own Prefect task, so a retry repeats only what failed.
* Tasks retry (Prefect ``retries`` with exponential back-off and jitter) only
  for transient errors: HTTP 429, HTTP 5xx, timeouts and connection errors.
  Validation, auth and other 4xx errors fail at once. These options live in
  one place, :func:`api_task_options`, which the flow applies to every API
  task (the task decorators carry none).
* ``Retry-After`` is honoured by waiting it out (capped) inside the task before
  the error is raised, so the next attempt never comes earlier than the API
  asked; the back-off then adds its own short delay.
* Every request first takes a slot from a Prefect global concurrency limit
  (``notion-api`` / ``resend-api``) in rate-limit mode, which spaces requests
  across all concurrent flow runs. When the limits do not exist the flow still
  works, unthrottled. :data:`CONCURRENCY_LIMITS` are the settings the deploy
  creates (see ``register.py --concurrency-limits``). :func:`take_slot` does
  what ``prefect.concurrency.sync.rate_limit(name, strict=False)`` does, with
  one direct API call per request, and remembers for a minute that a limit
  does not exist (as Prefect does for tag limits), so an unthrottled setup
  pays no round trip per request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import resend.exceptions
from notion_client.errors import HTTPResponseError, RequestTimeoutError
from prefect.client.schemas.objects import State

from christmas_signup.settings import env_float

T = TypeVar("T")

NOTION_LIMIT = "notion-api"
RESEND_LIMIT = "resend-api"

#: Per-address locks: a signup holds ``signup-lock-<n>`` (one slot) while it
#: records the contact and sends, ``n`` taken from a hash of the address, so two
#: identical signups at the same instant run one after the other. A fixed set of
#: locks (no cleanup needed); two addresses sharing one only wait a few seconds.
SIGNUP_LOCK_COUNT = 16
#: A lock's lease is renewed while its run lives; a killed run's lock frees itself
#: when the lease ends (Prefect's minimum, 60 s).
SIGNUP_LOCK_LEASE_SECONDS = 60.0

#: Global concurrency limits to create on the server: name, limit (burst),
#: slot_decay_per_second (average requests per second; 0: a plain lock).
CONCURRENCY_LIMITS: tuple[dict[str, Any], ...] = (
    {"name": NOTION_LIMIT, "limit": 3, "slot_decay_per_second": 3.0},
    {"name": RESEND_LIMIT, "limit": 2, "slot_decay_per_second": 2.0},
    *(
        {"name": f"signup-lock-{n:02d}", "limit": 1, "slot_decay_per_second": 0.0}
        for n in range(SIGNUP_LOCK_COUNT)
    ),
)


class TransientSignupError(RuntimeError):
    """The signup could not finish for a reason that passes (an outage, a rate limit,
    a timeout): the recovery runs it again later. Its name in a failed run's state
    message is how the recovery tells it from a permanent error."""


def signup_lock_name(email: str) -> str:
    """The lock a signup for ``email`` (already lower-cased) holds."""
    digest = hashlib.sha256(email.encode()).digest()
    return f"signup-lock-{int.from_bytes(digest[:4], 'big') % SIGNUP_LOCK_COUNT:02d}"


#: Seconds to remember that a limit does not exist.
MISSING_LIMIT_TTL = 60.0

logger = logging.getLogger(__name__)
_missing_limits: dict[str, float] = {}


def _status_of(exc: BaseException) -> int | None:
    if isinstance(exc, HTTPResponseError):
        return exc.status
    if isinstance(exc, resend.exceptions.ResendError):
        try:
            return int(exc.code)
        except (TypeError, ValueError):
            return None
    return None


def is_transient(exc: BaseException) -> bool:
    """True for 429, 5xx, timeouts, connection errors and Resend's concurrent-request
    409; False for everything else (validation, auth, other 4xx: permanent)."""
    if isinstance(
        exc, TransientSignupError | RequestTimeoutError | httpx.TransportError | TimeoutError
    ):
        return True
    if isinstance(exc, resend.exceptions.ResendError):
        if exc.error_type == "HttpClientError":
            return True  # the SDK's wrapper for timeouts and connection errors
        if exc.error_type == "concurrent_idempotent_requests":
            return True  # the same key is still being processed: retry later
    if isinstance(exc, httpx.HTTPStatusError):  # Prefect's own API (locks, limits)
        status: int | None = exc.response.status_code
    else:
        status = _status_of(exc)
    return status is not None and (status == 429 or status >= 500)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The error's Retry-After header in seconds, if it has one."""
    headers: Mapping[str, str] | None = getattr(exc, "headers", None)
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def retry_on_transient(task: object, task_run: object, state: State) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient failures."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


def take_slot(limit_name: str) -> bool:
    """Take one slot of a rate-limit-mode global concurrency limit, waiting while it is full.

    Returns False (and does not wait) when the limit does not exist.
    """
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    if _missing_limits.get(limit_name, 0.0) > time.monotonic():
        return False
    with get_client(sync_client=True) as client:
        while True:
            try:
                response = client.increment_concurrency_slots(
                    names=[limit_name], slots=1, mode="rate_limit"
                )
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 423:  # 423 Locked: no slot free yet
                    raise
                time.sleep(float(exc.response.headers.get("Retry-After") or 0.5))
                continue
            if not response.json():
                logger.info("concurrency limit %r does not exist: not throttled", limit_name)
                _missing_limits[limit_name] = time.monotonic() + MISSING_LIMIT_TTL
                return False
            return True


def call_api(limit_name: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` under the shared rate limit; on a transient error wait out Retry-After.

    The error is re-raised after the wait so Prefect's task retry takes over.
    """
    take_slot(limit_name)
    try:
        return fn()
    except Exception as exc:
        if is_transient(exc):
            wait = retry_after_seconds(exc)
            if wait:
                wait = min(wait, env_float("SIGNUP_MAX_RETRY_AFTER_SECONDS", 60.0))
                logger.warning("%s answered %s; waiting %.1fs (Retry-After)", limit_name, exc, wait)
                time.sleep(wait)
        raise


def api_task_options() -> dict[str, Any]:
    """Retry options for the API tasks, read from the environment at run time."""
    from prefect.tasks import exponential_backoff  # noqa: PLC0415

    from christmas_signup.settings import env_int  # noqa: PLC0415

    base = env_float("SIGNUP_RETRY_BASE_SECONDS", 2.0)
    return {
        "retries": env_int("SIGNUP_RETRIES", 4),
        "retry_delay_seconds": exponential_backoff(backoff_factor=base),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_on_transient,
    }
