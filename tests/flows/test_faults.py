"""Every external call of a signup fails the ways Notion and Resend fail, and the signup
still ends with exactly one Notion page and each of the four emails exactly once.

The matrix: each call of a first signup (:data:`CALLS`) x each way it fails
(:data:`MODES`), one test id per cell, asserted from the fake's state. The shared rate
limits are left out here (``rate_limit`` is a no-op; ``test_signup_flow.py`` proves
them): in the test server each turn after a task costs a 2 s client retry on SQLite's
lock, which would make the matrix take a quarter of an hour instead of a minute or two.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from christmas_signup import notion, resilience
from christmas_signup.flow import christmas_signup_handler
from christmas_signup.notion import parse_email_ids
from christmas_signup.recovery import ABANDON, RETRY, Limits, decide
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.schemas.objects import FlowRun
from prefect.variables import Variable

from .conftest import signup_params
from .test_signup_flow import STEP_DELAYS, by_step, plain

DATA_SOURCE = "/v1/data_sources/"
#: Every external call of a new contact's signup: (service, method, path prefix, skip).
#: ``skip`` picks which of several matching requests fails (the second send and the
#: second record, so that a resumed sequence is covered too).
CALLS: dict[str, tuple[str, str, str, int]] = {
    "notion-database": ("notion", "GET", "/v1/databases/", 0),
    "notion-data-source": ("notion", "GET", DATA_SOURCE, 0),
    "notion-query": ("notion", "POST", DATA_SOURCE, 0),
    "notion-create": ("notion", "POST", "/v1/pages", 0),
    "notion-record": ("notion", "PATCH", "/v1/pages/", 1),
    "resend-send": ("resend", "POST", "/emails", 1),
}
#: Request timeout the flow gets here; the timeout mode answers later than that.
TIMEOUT = 1.0
#: The fake's query lag, and the lag the flow allows for.
LAG = 1.5
MODES: dict[str, dict[str, Any]] = {
    # nothing done: 503
    "fail-before": {"status": 503},
    # done, then the answer is lost as a 502
    "fail-after": {"after": True, "status": 502},
    # done, then the answer comes after the client gave up
    "timeout": {"after": True, "status": None, "delay": TIMEOUT + 0.5},
    # done, the connection dropped, and Notion's query misses new pages for LAG seconds
    "lag": {"after": True, "drop": True},
}
CELLS = [(call, mode) for call in CALLS for mode in MODES]


@pytest.fixture
def faults_env(signup_env, monkeypatch):
    monkeypatch.setattr(resilience, "rate_limit", lambda *args, **kwargs: None)
    monkeypatch.setattr(notion, "_data_sources", {})  # each cell resolves it again
    monkeypatch.setattr(notion, "_unconfirmed_creates", {})
    monkeypatch.setenv("SIGNUP_HTTP_TIMEOUT_SECONDS", str(TIMEOUT))
    monkeypatch.setenv("NOTION_QUERY_LAG_SECONDS", str(LAG * 2))
    return signup_env


def assert_once_each(fake: dict[str, Any]) -> None:
    """One live page, each step sent once, and the page records them all."""
    pages = [p for p in fake["pages"] if not p["in_trash"]]
    assert len(pages) == 1, [plain(p)["Email"] for p in pages]
    steps = by_step(fake["emails"])
    assert sorted(steps) == sorted(STEP_DELAYS)
    assert {step: len(sent) for step, sent in steps.items()} == dict.fromkeys(STEP_DELAYS, 1)
    page = plain(pages[0])
    assert parse_email_ids(page["Scheduled Email IDs"]) == {s: e[0]["id"] for s, e in steps.items()}
    assert page["Sequence Status"] == "Scheduled"


def test_the_matrix_has_a_cell_per_call_and_mode():
    print(f"fault matrix: {len(CALLS)} calls x {len(MODES)} modes = {len(CELLS)} cells")
    assert len(CELLS) == 24


@pytest.mark.parametrize(("call", "mode"), CELLS, ids=[f"{c}-{m}" for c, m in CELLS])
def test_fault_matrix_one_page_and_each_email_once(faults_env, call, mode):
    service, method, path, skip = CALLS[call]
    if mode == "lag":
        faults_env.config(notion_query_lag_seconds=LAG)
    faults_env.faults(
        {"service": service, "method": method, "path": path, "skip": skip} | MODES[mode]
    )

    state = christmas_signup_handler(**signup_params(), return_state=True)

    assert state.is_completed(), state.message
    fake = faults_env.state()
    assert [f for f in fake["faults"]] == []  # the fault fired
    assert_once_each(fake)


def test_a_lagging_query_never_makes_a_second_page_for_the_next_signup(faults_env):
    faults_env.config(notion_query_lag_seconds=LAG)
    for _ in range(2):
        assert christmas_signup_handler(**signup_params(), return_state=True).is_completed()
    assert_once_each(faults_env.state())


def test_an_unverified_sender_is_refused_for_good_and_sends_nothing(faults_env):
    faults_env.config(resend_domains={"elsewhere.dev": "verified"})
    state = christmas_signup_handler(**signup_params(), return_state=True)

    assert state.is_failed()
    assert "SequenceSendError" in state.message
    assert "galatek.dev domain is not verified" in state.message
    fake = faults_env.state()
    assert fake["emails"] == []
    assert plain(fake["pages"][0])["Sequence Status"] == "Partial"
    # the recovery abandons it at once (and the alert automation tells on-call once)
    assert decide(flow_run(state), state.timestamp, RECOVERY).action == ABANDON


RECOVERY = Limits(
    window=timedelta(hours=24),
    first_delay=timedelta(seconds=20),
    max_delay=timedelta(hours=1),
    pending_timeout=timedelta(minutes=15),
    running_timeout=timedelta(hours=1),
)


def flow_run(state: Any) -> FlowRun:
    return FlowRun(flow_id=state.state_details.flow_run_id, state=state, created=state.timestamp)


def test_notion_conflict_and_overload_are_retried(faults_env):
    faults_env.faults(
        {"service": "notion", "method": "POST", "path": "/v1/pages", "status": 409},
        {"service": "notion", "method": "PATCH", "status": 529, "retry_after": 1},
    )
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_completed(), state.message
    statuses = [r["status"] for r in faults_env.requests("notion")]
    assert 409 in statuses and 529 in statuses
    assert_once_each(faults_env.state())


def test_a_long_retry_after_ends_the_run_and_the_recovery_waits_for_it(faults_env):
    faults_env.faults({"service": "notion", "method": "PATCH", "status": 429, "retry_after": 600})
    state = christmas_signup_handler(**signup_params(), return_state=True)

    assert state.is_failed()
    assert "TransientSignupError" in state.message and "retry after 600s" in state.message
    # not waited out in the task: one 429, no retry of it
    assert [r["status"] for r in faults_env.requests("notion")].count(429) == 1
    decision = decide(flow_run(state), state.timestamp, RECOVERY)
    assert decision.action == RETRY
    assert decision.when >= state.timestamp + timedelta(seconds=600)

    result = christmas_signup_handler(**signup_params())  # the recovery's run, later
    # the welcome's record was refused: it is sent again with its key (Resend answers
    # with the original email), then the rest
    assert sorted(result["sent"]) == sorted(STEP_DELAYS)
    assert_once_each(faults_env.state())


@pytest.fixture
def alert_webhook(faults_env):
    """The deploy's webhook alert block, pointed at the fake's Slack-style webhook."""
    CustomWebhookNotificationBlock(
        name="signup-alert-webhook",
        url=f"{faults_env.base_url}/services/T0/B0/quota",
        json_data={"text": "{{subject}}\n{{body}}"},
    ).save("signup-alert-webhook", overwrite=True)
    Variable.unset("signup-quota-alerted-at")
    yield faults_env
    CustomWebhookNotificationBlock.delete("signup-alert-webhook")
    Variable.unset("signup-quota-alerted-at")


def test_the_daily_quota_stops_sending_alerts_once_and_the_signup_completes_after(
    alert_webhook,
):
    from christmas_signup.recovery import alert_quota_once  # noqa: PLC0415

    fake = alert_webhook
    fake.config(resend_daily_quota=2)
    state = christmas_signup_handler(**signup_params(), return_state=True)

    assert state.is_failed()
    assert "TransientSignupError" in state.message
    assert "daily_quota_exceeded" in state.message
    sends = [r["status"] for r in fake.requests("resend")]
    assert sends == [200, 200, 429]  # stopped at the first refusal, no retry of it
    decision = decide(flow_run(state), state.timestamp, RECOVERY)
    assert decision.action == RETRY
    assert decision.when >= state.timestamp + timedelta(hours=1)

    # two recovery passes while the quota is spent: one alert
    now = datetime.now(UTC)
    assert alert_quota_once(now, 1) is True
    assert alert_quota_once(now + timedelta(minutes=1), 1) is False
    webhooks = fake.state()["webhooks"]
    assert len(webhooks) == 1
    assert "daily email quota" in webhooks[0]["body"]["text"]

    fake.config(resend_daily_quota=0)  # the quota comes back
    result = christmas_signup_handler(**signup_params())
    assert sorted(result["sent"]) == ["day-10-offer", "day-5-story"]
    assert_once_each(fake.state())


def test_the_recovery_alerts_through_the_blocks_the_deploy_creates():
    import register  # noqa: PLC0415 - flows/register.py
    from christmas_signup.recovery import ALERT_BLOCKS  # noqa: PLC0415

    assert ALERT_BLOCKS == (register.EMAIL_BLOCK, register.WEBHOOK_BLOCK)


def test_a_status_type_sequence_status_is_written_as_a_status(faults_env):
    faults_env.config(
        notion_schema={
            "Sequence Status": {"type": "status", "options": ["Pending", "Partial", "Scheduled"]}
        }
    )
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_completed(), state.message
    fake = faults_env.state()
    assert fake["pages"][0]["properties"]["Sequence Status"]["status"]["name"] == "Scheduled"
    assert_once_each(fake)


def test_a_property_of_the_wrong_type_fails_at_once_naming_it(faults_env):
    faults_env.config(notion_schema={"Email": "rich_text"})
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_failed()
    assert "TransientSignupError" not in state.message
    assert "'Email' (email) must be of type email, not rich_text" in state.message
    assert faults_env.state()["pages"] == []


def test_an_address_notion_cannot_store_is_refused_before_any_call(faults_env):
    address = "a" * 191 + "@b.example"  # 201 characters
    state = christmas_signup_handler(**signup_params(email=address), return_state=True)
    assert state.is_failed()
    assert "email" in state.message and "200" in state.message
    assert faults_env.state()["requests"] == []
