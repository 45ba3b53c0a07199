"""Retry policy and shared rate limits for the Notion and Resend calls.

* Each API call is its own Prefect task, so a retry repeats only what failed.
* Tasks retry (Prefect ``retries`` with exponential back-off and jitter) only
  for transient errors: HTTP 429, HTTP 5xx, timeouts and connection errors.
  Validation, auth and other 4xx errors fail at once. These options live in
  one place, :func:`api_task_options`, which the flow applies to every API
  task (the task decorators carry none).
* Transient also: Notion's ``409 conflict_error`` ("try again", Notion's status codes)
  and ``529``; Resend's concurrent-request 409.
* ``Retry-After`` is honoured however long. Up to ``SIGNUP_MAX_RETRY_AFTER_SECONDS``
  (default 60) it is waited out inside the task before the error is raised, so the next
  attempt never comes earlier than the API asked; the back-off then adds its own short
  delay. A longer one is not waited for in the task (that would hold a worker slot):
  it raises :class:`RetryLaterError`, which the task does not retry, the run fails
  with ``TransientSignupError ... retry after <n>s`` and the recovery runs it again no
  earlier than that.
* Resend's ``429 daily_quota_exceeded`` is a :class:`RetryLaterError` too (after its
  ``Retry-After``, else :data:`QUOTA_RETRY_SECONDS`): nothing more is sent until the
  quota comes back; the recovery alerts on-call once (``recovery.py``).
* Every request first waits for its turn at a Prefect global concurrency limit with
  slot decay (``notion-api``, ``resend-api``), taken with Prefect's ``rate_limit()``:
  one limit on the server paces every run on every worker host. :data:`CONCURRENCY_LIMITS`
  are the settings the deploy creates (``register.py --concurrency-limits``). When a
  limit does not exist the flow still works, unthrottled (Prefect logs a warning).
* The server decays a limit by whole slots (``floor(decay x seconds)`` since the limit
  last changed), and every grant or refusal restarts that clock, so a one-slot-per-request
  limit polled by several runs loses up to a third of its rate (measured: 2.5 of 3 req/s).
  Each request therefore takes :data:`RATE_SLOTS` slots of a limit that many times
  larger: the same average rate and burst, the rounding lost now 1/100 of a request
  (measured: 3.0 of 3 req/s).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import resend.exceptions
from notion_client.errors import HTTPResponseError, RequestTimeoutError
from prefect.client.schemas.objects import State
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency, rate_limit

from christmas_signup.privacy import redact
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
#: when the lease ends (Prefect's minimum, 60 s). The server keeps leases where a
#: restart does not forget them (a file store on one host, Redis when scaled out:
#: roles/prefect_server), so its repossessor frees a dead run's slot after any restart.
SIGNUP_LOCK_LEASE_SECONDS = 60.0
#: How Prefect says a limit does not exist (``strict=True``).
_MISSING_LIMIT = "must be created before acquiring slots"

#: Slots one API request takes of its rate limit (see the module docstring).
RATE_SLOTS = 100
#: Average requests per second and burst: Notion's documented 3 requests/s average;
#: Resend's documented default of 2 requests/s per team.
RATES: dict[str, tuple[float, int]] = {NOTION_LIMIT: (3.0, 3), RESEND_LIMIT: (2.0, 2)}

#: Global concurrency limits to create on the server: name, limit, slot_decay_per_second
#: (slots freed per second; 0: a plain lock). A rate limit holds RATE_SLOTS per request.
CONCURRENCY_LIMITS: tuple[dict[str, Any], ...] = (
    *(
        {"name": name, "limit": burst * RATE_SLOTS, "slot_decay_per_second": rate * RATE_SLOTS}
        for name, (rate, burst) in RATES.items()
    ),
    *(
        {"name": f"signup-lock-{n:02d}", "limit": 1, "slot_decay_per_second": 0.0}
        for n in range(SIGNUP_LOCK_COUNT)
    ),
)


class TransientSignupError(RuntimeError):
    """The signup could not finish for a reason that passes (an outage, a rate limit,
    a timeout): the recovery runs it again later. Its name in a failed run's state
    message is how the recovery tells it from a permanent error."""


#: The error name Resend gives when the team's daily email quota is spent; it appears in
#: the failed run's state message, which is how the recovery recognises it.
QUOTA_EXCEEDED = "daily_quota_exceeded"
#: When Resend's quota answer carries no Retry-After (none is documented): try again in
#: an hour (guessed; the quota counts the last 24 hours).
QUOTA_RETRY_SECONDS = 3600.0
#: How a retry time is written into the error message (``retry after 120s``); the
#: recovery reads it back (:func:`retry_after_in`).
_RETRY_AFTER_TEXT = re.compile(r"retry after (\d+(?:\.\d+)?)s")


class RetryLaterError(RuntimeError):
    """A transient failure that lasts longer than a task should wait (a long Retry-After,
    Resend's daily quota): not retried by the task; the run fails as transient and the
    recovery runs it again no earlier than ``seconds`` from now."""

    def __init__(self, reason: str, seconds: float) -> None:
        super().__init__(f"{reason}; retry after {math.ceil(seconds)}s")
        self.seconds = seconds


def retry_after_in(message: str) -> float | None:
    """The ``retry after <n>s`` a :class:`RetryLaterError` wrote into ``message``."""
    match = _RETRY_AFTER_TEXT.search(message)
    return float(match.group(1)) if match else None


def http_timeout_seconds() -> float:
    """How long one Notion or Resend request may take (``SIGNUP_HTTP_TIMEOUT_SECONDS``)."""
    return env_float("SIGNUP_HTTP_TIMEOUT_SECONDS", 30.0)


def signup_lock_name(email: str) -> str:
    """The lock a signup for ``email`` (already lower-cased) holds."""
    digest = hashlib.sha256(email.encode()).digest()
    return f"signup-lock-{int.from_bytes(digest[:4], 'big') % SIGNUP_LOCK_COUNT:02d}"


class SignupLockMissingError(RuntimeError):
    """The server has no ``signup-lock-<n>`` limit (the deploy creates them): running
    unlocked could make two pages for one contact, so the run fails at once (permanent:
    on-call is alerted; rerun the deploy, then retry the run)."""


@contextmanager
def signup_lock(email: str) -> Iterator[None]:
    """Hold the lock of ``email`` (lower-cased) for the body of the ``with``.

    The lock must exist (``strict``), and a run whose lease can no longer be renewed is
    stopped by Prefect rather than carrying on unlocked; the recovery runs it again. A
    server that cannot answer while the lock is taken (restarting) is a transient error.
    """
    name = signup_lock_name(email)
    try:
        with concurrency(
            name,
            occupy=1,
            lease_duration=SIGNUP_LOCK_LEASE_SECONDS,
            timeout_seconds=env_float("SIGNUP_LOCK_TIMEOUT_SECONDS", 600.0),
            strict=True,
        ):
            yield
    except ConcurrencySlotAcquisitionError as exc:
        if _MISSING_LIMIT in str(exc):
            raise SignupLockMissingError(
                f"concurrency limit {name!r} does not exist on the server: run the deploy"
            ) from exc
        raise TransientSignupError(f"lock {name!r}: {exc}") from exc


logger = logging.getLogger(__name__)


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
    """True for 429, 5xx, timeouts, connection errors, Notion's conflict 409 and Resend's
    concurrent-request 409; False for everything else (validation, auth, other 4xx:
    permanent)."""
    if isinstance(
        exc,
        TransientSignupError
        | RetryLaterError
        | RequestTimeoutError
        | httpx.TransportError
        | TimeoutError,
    ):
        return True
    if isinstance(exc, HTTPResponseError) and exc.code == "conflict_error":
        return True  # Notion: "a data collision ... try again"
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
    except RetryLaterError:
        return False  # the recovery runs it again later
    except Exception as exc:
        return is_transient(exc)
    return False


def call_api(limit_name: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` when the shared rate limit gives its turn; on a transient error wait out
    Retry-After.

    The error is re-raised after the wait so Prefect's task retry takes over. A limit
    the server cannot give (Prefect unreachable, or a limit not yet updated by a deploy in
    progress) is a transient error too: the task retries, then the recovery.
    """
    try:
        rate_limit(limit_name, occupy=RATE_SLOTS)
    except ConcurrencySlotAcquisitionError as exc:
        raise TransientSignupError(f"rate limit {limit_name!r}: {exc}") from exc
    try:
        return fn()
    except Exception as exc:
        if not is_transient(exc):
            raise
        wait = retry_after_seconds(exc)
        if getattr(exc, "error_type", None) == QUOTA_EXCEEDED:
            reason = f"Resend {QUOTA_EXCEEDED}: {exc}"
            raise RetryLaterError(reason, wait or QUOTA_RETRY_SECONDS) from exc
        if wait and wait > env_float("SIGNUP_MAX_RETRY_AFTER_SECONDS", 60.0):
            raise RetryLaterError(f"{limit_name} answered {exc}", wait) from exc
        if wait:
            logger.warning(
                "%s answered %s; waiting %.1fs (Retry-After)", limit_name, redact(str(exc)), wait
            )
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
