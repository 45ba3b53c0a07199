"""Prefect flow ``signup-recovery``: every accepted signup completes, or on-call hears of it.

Entrypoint: ``christmas_signup/recovery.py:recover_signups``. The deploy runs it as
the deployment ``signup-recovery/recovery`` on an interval (default 60 s), at most
one run at a time (deployment concurrency limit 1, new runs cancelled while one is
busy). Each run looks at the signup deployment's runs and decides, with
:func:`decide`:

* ``Failed`` with :class:`TransientSignupError` in its message (an outage, a rate
  limit, a timeout that outlasted the task retries), or ``Crashed`` (its process
  died: a killed worker, a reboot; the zombie automation marks a run whose
  heartbeats stopped as ``Crashed``): **run again**, the same flow run (same id,
  same parameters, so one re-run at a time per signup), set to ``AwaitingRetry``
  after a back-off that doubles with every attempt (``first_delay_seconds``,
  default 20 s, capped at ``max_delay_seconds``), never past the end of the window;
* ``Failed`` for any other reason (validation, a 4xx that is not 429 or Resend's
  concurrent-request 409, a bug): permanent, **abandon** at once;
* ``Pending`` for longer than ``pending_timeout_seconds`` (its worker died before
  the flow started): run again;
* anything still not finished ``window_hours`` after the run was created
  (default 24 h): **abandon**.

Abandoning sets the run to a ``Failed`` state named ``Abandoned`` (message: why),
which emits the event ``prefect.flow-run.Abandoned``: the deploy's alert
automation (``signup-alert``) sends on-call exactly one notification for it. An
abandoned run is not looked at again. The recovery runs on the worker pool, so it
works as long as one worker is up; the zombie automation runs in the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import AwaitingRetry, Failed

from christmas_signup.privacy import redact
from christmas_signup.resilience import TransientSignupError

ABANDONED = "Abandoned"
SMOKE_TEST_TAG = "smoke-test"
RETRY = "retry"
ABANDON = "abandon"
WAIT = "wait"
#: Runs looked at per state and recovery run; the rest wait for the next one.
PAGE_SIZE = 200


@dataclass(frozen=True)
class Decision:
    """What to do with one run: ``retry`` at ``when``, ``abandon``, or ``wait``."""

    action: str
    reason: str = ""
    when: datetime | None = None


def decide(  # noqa: PLR0911 - one return per rule reads best here
    run: FlowRun,
    now: datetime,
    *,
    window: timedelta,
    first_delay: timedelta,
    max_delay: timedelta,
    pending_timeout: timedelta,
) -> Decision:
    """The recovery's rule for one run of the signup deployment (see the module docstring)."""
    state = run.state
    if state is None or run.created is None:
        return Decision(WAIT)
    message = state.message or ""
    window_end = run.created + window
    hours = f"{window.total_seconds() / 3600:g} h"
    if state.type == StateType.FAILED and state.name != ABANDONED:
        if TransientSignupError.__name__ not in message:
            return Decision(ABANDON, f"permanent error, not retried: {message}")
    elif state.type == StateType.PENDING and state.timestamp is not None:
        if now - state.timestamp < pending_timeout:
            return Decision(WAIT)
        message = f"pending for {now - state.timestamp} without starting"
    elif state.type == StateType.SCHEDULED:
        if now < window_end:
            return Decision(WAIT)
        return Decision(ABANDON, f"not run within the {hours} retry window ({state.name})")
    elif state.type != StateType.CRASHED:
        return Decision(WAIT)
    if now >= window_end:
        return Decision(ABANDON, f"still failing after the {hours} retry window: {message}")
    attempts = max(run.run_count, 1)
    delay = min(first_delay * 2 ** (attempts - 1), max_delay)
    when = min(now + delay, window_end)
    return Decision(RETRY, f"attempt {attempts + 1} after {message}", when)


def _candidates(client: Any, deployment_id: UUID, now: datetime) -> list[FlowRun]:  # noqa: ANN401
    """Failed or crashed runs, and runs still scheduled or pending."""
    deployment = FlowRunFilterDeploymentId(any_=[deployment_id])
    ended = FlowRunFilter(
        deployment_id=deployment,
        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Failed", "Crashed"])),
    )
    waiting = FlowRunFilter(
        deployment_id=deployment,
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
        ),
    )
    runs = client.read_flow_runs(flow_run_filter=ended, limit=PAGE_SIZE)
    runs += client.read_flow_runs(flow_run_filter=waiting, limit=PAGE_SIZE)
    # The deploy's smoke tests are dry runs: a failed one is the deploy's business.
    return [run for run in runs if SMOKE_TEST_TAG not in run.tags]


@flow(name="signup-recovery", validate_parameters=True)
def recover_signups(
    signup_deployment_id: UUID,
    window_hours: float = 24.0,
    first_delay_seconds: float = 20.0,
    max_delay_seconds: float = 3600.0,
    pending_timeout_seconds: float = 900.0,
) -> dict[str, list[str]]:
    """Run unfinished signups again, or abandon them (see the module docstring).

    Returns the ids of the runs it set to run again (``retried``) and abandoned.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    limits = {
        "window": timedelta(hours=window_hours),
        "first_delay": timedelta(seconds=first_delay_seconds),
        "max_delay": timedelta(seconds=max_delay_seconds),
        "pending_timeout": timedelta(seconds=pending_timeout_seconds),
    }
    summary: dict[str, list[str]] = {"retried": [], "abandoned": []}
    with get_client(sync_client=True) as client:
        for run in _candidates(client, signup_deployment_id, now):
            decision = decide(run, now, **limits)
            if decision.action == RETRY:
                state = AwaitingRetry(scheduled_time=decision.when, message=decision.reason)
                summary["retried"].append(str(run.id))
            elif decision.action == ABANDON:
                state = Failed(name=ABANDONED, message=decision.reason[:1000])
                summary["abandoned"].append(str(run.id))
            else:
                continue
            # The reason quotes the run's error, which may quote the address.
            logger.warning(
                "flow run %s (%s): %s", run.name, decision.action, redact(decision.reason)
            )
            client.set_flow_run_state(run.id, state, force=True)
    return summary
