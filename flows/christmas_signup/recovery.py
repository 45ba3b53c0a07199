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
  a failure that asked for a later retry (``retry after <n>s`` in its message: a long
  ``Retry-After``, Resend's daily quota) is not run again before that;
* ``Pending`` for longer than ``pending_timeout_seconds`` (its worker died before
  the flow started): run again;
* ``Running`` for longer than ``running_timeout_seconds`` (its process is gone and nothing
  marked it ``Crashed``, say with the zombie automation off): run again;
* ``Cancelled`` (someone or something stopped it), or ``Cancelling`` / ``Paused`` for longer
  than ``pending_timeout_seconds``: **abandon**, so on-call hears of it (a deliberate cancel
  is retried by hand: ``prefect flow-run retry``);
* anything still not finished ``window_hours`` after the run was created
  (default 24 h): **abandon**.

Abandoning sets the run to a ``Failed`` state named ``Abandoned`` (message: why),
which emits the event ``prefect.flow-run.Abandoned``: the deploy's alert
automation (``signup-alert``) sends on-call exactly one notification for it. An
abandoned run is not looked at again. The recovery runs on the worker pool, so it
works as long as one worker is up; the zombie automation runs in the server.

Resend's daily quota (``daily_quota_exceeded`` in a run's message): those signups wait
and are run again after the quota's retry time; on-call gets **one** notification
through the deploy's alert blocks (``signup-alert-email``, ``signup-alert-webhook``), at
most one per :data:`QUOTA_ALERT_INTERVAL`, remembered in the Prefect variable
``signup-quota-alerted-at``. The signups complete by themselves when the quota comes back.
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
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.states import AwaitingRetry, Failed

from christmas_signup.privacy import redact
from christmas_signup.resilience import QUOTA_EXCEEDED, TransientSignupError, retry_after_in

ABANDONED = "Abandoned"
SMOKE_TEST_TAG = "smoke-test"
RETRY = "retry"
ABANDON = "abandon"
WAIT = "wait"
#: Runs looked at per state and recovery run; the rest wait for the next one.
PAGE_SIZE = 200
#: The notification blocks ``register.py --automations`` creates (each only when set;
#: both Slack-style or Resend webhooks, ``CustomWebhookNotificationBlock``).
ALERT_BLOCKS = ("signup-alert-email", "signup-alert-webhook")
QUOTA_ALERT_VARIABLE = "signup-quota-alerted-at"
#: One quota alert per this long (Resend's daily quota counts a day).
QUOTA_ALERT_INTERVAL = timedelta(hours=24)
QUOTA_ALERT_SUBJECT = "Signups wait for Resend's daily email quota"
QUOTA_ALERT_BODY = (
    "Resend answered daily_quota_exceeded: {count} signup(s) wait and are run again "
    "when the quota comes back; nothing is lost. If this happens often, raise the plan's "
    "quota in Resend. Runbook: README, 'An alert arrived'."
)


@dataclass(frozen=True)
class Decision:
    """What to do with one run: ``retry`` at ``when``, ``abandon``, or ``wait``."""

    action: str
    reason: str = ""
    when: datetime | None = None


@dataclass(frozen=True)
class Limits:
    """The recovery's timings (the flow's parameters, as timedeltas)."""

    window: timedelta
    first_delay: timedelta
    max_delay: timedelta
    pending_timeout: timedelta
    running_timeout: timedelta


def _verdict(state: State, now: datetime, window_end: datetime, limits: Limits) -> Decision:  # noqa: PLR0911 - one return per rule reads best here
    """What the state alone says: wait, abandon, or retry (``reason``: what went wrong)."""
    message = state.message or ""
    age = now - (state.timestamp or now)
    hours = f"{limits.window.total_seconds() / 3600:g} h"
    if state.type == StateType.FAILED and state.name != ABANDONED:
        if TransientSignupError.__name__ not in message:
            return Decision(ABANDON, f"permanent error, not retried: {message}")
        return Decision(RETRY, message)
    if state.type == StateType.CRASHED:
        return Decision(RETRY, message)
    if state.type == StateType.PENDING and age >= limits.pending_timeout:
        return Decision(RETRY, f"pending for {age} without starting")
    if state.type == StateType.RUNNING and age >= limits.running_timeout:
        return Decision(RETRY, f"running for {age} without finishing")
    if state.type == StateType.CANCELLED:
        return Decision(ABANDON, f"cancelled before it finished: {message or state.name}")
    if state.type in {StateType.CANCELLING, StateType.PAUSED} and age >= limits.pending_timeout:
        return Decision(ABANDON, f"{state.name} for {age}: {message}")
    if state.type == StateType.SCHEDULED and now >= window_end:
        return Decision(ABANDON, f"not run within the {hours} retry window ({state.name})")
    return Decision(WAIT)


def decide(run: FlowRun, now: datetime, limits: Limits) -> Decision:
    """The recovery's rule for one run of the signup deployment (see the module docstring)."""
    if run.state is None or run.created is None:
        return Decision(WAIT)
    window_end = run.created + limits.window
    verdict = _verdict(run.state, now, window_end, limits)
    if verdict.action != RETRY:
        return verdict
    if now >= window_end:
        hours = f"{limits.window.total_seconds() / 3600:g} h"
        return Decision(ABANDON, f"still failing after the {hours} retry window: {verdict.reason}")
    attempts = max(run.run_count, 1)
    delay = min(limits.first_delay * 2 ** (attempts - 1), limits.max_delay)
    when = now + delay
    asked = retry_after_in(run.state.message or "")
    if asked is not None and run.state.timestamp is not None:
        when = max(when, run.state.timestamp + timedelta(seconds=asked))
    return Decision(RETRY, f"attempt {attempts + 1} after {verdict.reason}", min(when, window_end))


def alert_quota_once(now: datetime, count: int) -> bool:
    """Tell on-call that signups wait for Resend's daily quota, unless already told within
    :data:`QUOTA_ALERT_INTERVAL`; True when a notification went out."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock  # noqa: PLC0415
    from prefect.variables import Variable  # noqa: PLC0415

    last = Variable.get(QUOTA_ALERT_VARIABLE, default=None)
    if last and now - datetime.fromisoformat(str(last)) < QUOTA_ALERT_INTERVAL:
        return False
    sent = False
    for name in ALERT_BLOCKS:
        try:
            block = CustomWebhookNotificationBlock.load(name)
        except ValueError:
            continue  # that channel is not configured
        block.notify(QUOTA_ALERT_BODY.format(count=count), QUOTA_ALERT_SUBJECT)
        sent = True
    Variable.set(QUOTA_ALERT_VARIABLE, now.isoformat(), overwrite=True)
    return sent


def _candidates(client: Any, deployment_id: UUID, now: datetime) -> list[FlowRun]:  # noqa: ANN401
    """Failed, crashed or cancelled runs, and runs not finished yet (every state but
    Completed: none is left unseen)."""
    deployment = FlowRunFilterDeploymentId(any_=[deployment_id])
    ended = FlowRunFilter(
        deployment_id=deployment,
        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Failed", "Crashed"])),
    )
    waiting = FlowRunFilter(
        deployment_id=deployment,
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(
                any_=[
                    StateType.SCHEDULED,
                    StateType.PENDING,
                    StateType.RUNNING,
                    StateType.CANCELLING,
                    StateType.CANCELLED,
                    StateType.PAUSED,
                ]
            )
        ),
    )
    runs = client.read_flow_runs(flow_run_filter=ended, limit=PAGE_SIZE)
    runs += client.read_flow_runs(flow_run_filter=waiting, limit=PAGE_SIZE)
    # The deploy's smoke tests are dry runs: a failed one is the deploy's business.
    return [run for run in runs if SMOKE_TEST_TAG not in run.tags]


@flow(name="signup-recovery", validate_parameters=True)
def recover_signups(  # noqa: PLR0917 - Prefect maps the parameters by name
    signup_deployment_id: UUID,
    window_hours: float = 24.0,
    first_delay_seconds: float = 20.0,
    max_delay_seconds: float = 3600.0,
    pending_timeout_seconds: float = 900.0,
    running_timeout_seconds: float = 3600.0,
) -> dict[str, list[str]]:
    """Run unfinished signups again, or abandon them (see the module docstring).

    Returns the ids of the runs it set to run again (``retried``) and abandoned.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    limits = Limits(
        window=timedelta(hours=window_hours),
        first_delay=timedelta(seconds=first_delay_seconds),
        max_delay=timedelta(seconds=max_delay_seconds),
        pending_timeout=timedelta(seconds=pending_timeout_seconds),
        running_timeout=timedelta(seconds=running_timeout_seconds),
    )
    summary: dict[str, list[str]] = {"retried": [], "abandoned": []}
    waiting_for_quota = 0
    with get_client(sync_client=True) as client:
        for run in _candidates(client, signup_deployment_id, now):
            decision = decide(run, now, limits)
            if decision.action == RETRY:
                state = AwaitingRetry(scheduled_time=decision.when, message=decision.reason)
                summary["retried"].append(str(run.id))
                waiting_for_quota += QUOTA_EXCEEDED in decision.reason
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
    if waiting_for_quota and alert_quota_once(now, waiting_for_quota):
        logger.warning(
            "%d signup(s) wait for Resend's daily quota: on-call told", waiting_for_quota
        )
    return summary
