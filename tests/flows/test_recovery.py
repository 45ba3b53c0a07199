"""The recovery's rule for each run: run it again (with back-off), wait, or abandon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from christmas_signup.recovery import ABANDON, RETRY, WAIT, Limits, decide
from prefect.client.schemas.objects import FlowRun, State, StateType

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(
    window=timedelta(hours=24),
    first_delay=timedelta(seconds=60),
    max_delay=timedelta(hours=1),
    pending_timeout=timedelta(minutes=15),
    running_timeout=timedelta(hours=1),
)
TRANSIENT = "Flow run encountered an exception: TransientSignupError: 503"
PERMANENT = "Flow run encountered an exception: SequenceSendError: 403 invalid_api_key"


def run(
    kind: StateType, message: str = "", age=timedelta(minutes=5), runs=1, name=None, since=None
):
    state = State(type=kind, name=name, message=message, timestamp=since or NOW)
    return FlowRun(id=uuid4(), flow_id=uuid4(), state=state, created=NOW - age, run_count=runs)


def test_a_transient_failure_is_run_again_with_doubling_back_off():
    delays = []
    for attempt in (1, 2, 3, 7, 20):
        decision = decide(run(StateType.FAILED, TRANSIENT, runs=attempt), NOW, LIMITS)
        assert decision.action == RETRY
        delays.append(decision.when - NOW)
    assert delays == [
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=240),
        timedelta(hours=1),  # capped
        timedelta(hours=1),
    ]


def test_a_crashed_run_is_run_again():
    assert decide(run(StateType.CRASHED, "missing heartbeats"), NOW, LIMITS).action == RETRY


def test_a_permanent_failure_is_abandoned_at_once():
    decision = decide(run(StateType.FAILED, PERMANENT), NOW, LIMITS)
    assert decision.action == ABANDON
    assert "403" in decision.reason


def test_the_window_ends_retries():
    old = timedelta(hours=24, minutes=1)
    decision = decide(run(StateType.CRASHED, "missing heartbeats", age=old), NOW, LIMITS)
    assert decision.action == ABANDON
    assert decision.reason == "still failing after the 24 h retry window: missing heartbeats"
    assert decide(run(StateType.SCHEDULED, name="Late", age=old), NOW, LIMITS).action == ABANDON
    # a retry is never scheduled past the window's end
    nearly = run(StateType.FAILED, TRANSIENT, age=timedelta(hours=23, minutes=59, seconds=30))
    decision = decide(nearly, NOW, LIMITS)
    assert decision.action == RETRY
    assert decision.when == nearly.created + LIMITS.window


@pytest.mark.parametrize(
    ("kind", "since", "action"),
    [
        (StateType.PENDING, NOW - timedelta(minutes=5), WAIT),
        (StateType.PENDING, NOW - timedelta(minutes=16), RETRY),
        (StateType.SCHEDULED, NOW, WAIT),
        (StateType.RUNNING, NOW - timedelta(minutes=59), WAIT),
        (StateType.RUNNING, NOW - timedelta(minutes=61), RETRY),
        (StateType.COMPLETED, NOW, WAIT),
        (StateType.CANCELLED, NOW, ABANDON),
        (StateType.CANCELLING, NOW - timedelta(minutes=5), WAIT),
        (StateType.CANCELLING, NOW - timedelta(minutes=16), ABANDON),
        (StateType.PAUSED, NOW - timedelta(minutes=5), WAIT),
        (StateType.PAUSED, NOW - timedelta(minutes=16), ABANDON),
    ],
)
def test_other_states(kind, since, action):
    assert decide(run(kind, since=since), NOW, LIMITS).action == action


def test_an_abandoned_run_is_left_alone():
    abandoned = run(StateType.FAILED, PERMANENT, name="Abandoned")
    assert decide(abandoned, NOW, LIMITS).action == WAIT
