"""End-to-end behaviour of the signup flow against the fake Notion and Resend."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from christmas_signup.emails import idempotency_key
from christmas_signup.flow import christmas_signup_handler
from christmas_signup.notion import parse_email_ids
from christmas_signup.resilience import (
    CONCURRENCY_LIMITS,
    RATE_SLOTS,
    TransientSignupError,
    call_api,
    signup_lock_name,
)
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.flow_engine import run_flow

from .conftest import EXAMPLE_SIGNUP, SENDER, signup_params

STEP_DELAYS = {
    "welcome": None,
    "day-2-fixes": 2,
    "day-5-story": 5,
    "day-10-offer": 10,
}


def plain(page: dict[str, Any]) -> dict[str, Any]:
    """A Notion page's properties as plain values."""
    values: dict[str, Any] = {}
    for name, prop in page["properties"].items():
        value = prop[prop["type"]]
        if prop["type"] in ("title", "rich_text"):
            value = "".join(item["plain_text"] for item in value)
        elif prop["type"] in ("select", "status"):
            value = value["name"] if value else None
        elif prop["type"] == "date":
            value = value["start"] if value else None
        values[name] = value
    return values


def by_step(emails: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    steps: dict[str, list[dict[str, Any]]] = {}
    for email in emails:
        steps.setdefault(email["idempotency_key"].split("/")[0], []).append(email)
    return steps


def test_one_signup_creates_contact_and_schedules_sequence(signup_env):
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    result = christmas_signup_handler(**signup_params())
    after = datetime.now(UTC)

    state = signup_env.state()
    assert len(state["pages"]) == 1
    props = plain(state["pages"][0])
    assert props["Email"] == EXAMPLE_SIGNUP["email"]
    assert props["Name"] == EXAMPLE_SIGNUP["first_name"]
    assert props["Business"] == EXAMPLE_SIGNUP["business_name"]
    assert props["Segment"] == "Critical"
    assert props["Assessment Score"] == EXAMPLE_SIGNUP["assessment_score"]
    assert (props["Red Systems"], props["Orange Systems"]) == (2, 3)
    assert (props["Yellow Systems"], props["Green Systems"]) == (1, 4)
    assert (props["GPS Score"], props["Money Score"]) == (7, 5)
    assert props["Weakest System 1"] == EXAMPLE_SIGNUP["weakest_system_1"]
    assert props["Revenue Leak Total"] == EXAMPLE_SIGNUP["revenue_leak_total"]
    assert props["Sequence Status"] == "Scheduled"

    steps = by_step(state["emails"])
    assert sorted(steps) == sorted(STEP_DELAYS)
    assert all(len(sent) == 1 for sent in steps.values())
    ids = parse_email_ids(props["Scheduled Email IDs"])
    assert ids == {step: sent[0]["id"] for step, sent in steps.items()}
    assert result["sent"] == ids
    assert result["segment"] == "critical"

    start = datetime.fromisoformat(props["Sequence Start"])
    assert before <= start <= after
    for step, days in STEP_DELAYS.items():
        email = steps[step][0]
        assert email["to"] == [EXAMPLE_SIGNUP["email"]]
        assert email["from"] == SENDER
        assert email["idempotency_key"] == idempotency_key(step, EXAMPLE_SIGNUP["email"])
        if days is None:
            assert email["scheduled_at"] is None
            assert email["last_event"] == "delivered"
        else:
            assert datetime.fromisoformat(email["scheduled_at"]) == start + timedelta(days=days)

    welcome = steps["welcome"][0]
    assert "Your result: critical" in welcome["text"]
    assert "Your result: critical" in welcome["html"]
    assert "Lovelace &amp; Daughters" in welcome["html"]  # autoescaped HTML
    assert "Lovelace & Daughters" in welcome["text"]
    assert "Lead follow-up, Invoicing" in welcome["text"]
    assert "Ada" in welcome["text"]
    assert welcome["subject"] == "Your systems assessment results: Critical"


def test_segment_decides_content(signup_env):
    christmas_signup_handler(
        **signup_params(red_systems=0, orange_systems=0, yellow_systems=1, green_systems=5)
    )
    state = signup_env.state()
    assert plain(state["pages"][0])["Segment"] == "Thriving"
    welcome = by_step(state["emails"])["welcome"][0]
    assert "Your result: thriving" in welcome["text"]
    assert "critical" not in welcome["text"]


def test_same_signup_twice_sends_nothing_new(signup_env):
    christmas_signup_handler(**signup_params())
    first = signup_env.state()
    sends_before = len([r for r in first["requests"] if r["path"] == "/emails"])

    result = christmas_signup_handler(**signup_params(email=EXAMPLE_SIGNUP["email"]))

    second = signup_env.state()
    assert len(second["pages"]) == 1
    assert second["pages"][0]["id"] == first["pages"][0]["id"]
    assert len(second["emails"]) == len(first["emails"]) == 4
    assert len([r for r in second["requests"] if r["path"] == "/emails"]) == sends_before
    assert result["sent"] == {}
    assert result["created"] is False


def test_notion_rate_limited_twice_then_succeeds(signup_env):
    signup_env.faults({"service": "notion", "status": 429, "count": 2, "retry_after": 1})
    started = time.monotonic()
    state = christmas_signup_handler(**signup_params(), return_state=True)
    elapsed = time.monotonic() - started

    assert state.is_completed(), state
    fake = signup_env.state()
    assert len(fake["pages"]) == 1
    assert len(fake["emails"]) == 4
    limited = [r for r in fake["requests"] if r["status"] == 429]
    assert len(limited) == 2
    assert elapsed >= 2  # Retry-After: 1 honoured, twice


def test_resend_500_on_second_email_is_retried_once_each(signup_env):
    signup_env.faults(
        {"service": "resend", "method": "POST", "path": "/emails", "skip": 1, "status": 500}
    )
    state = christmas_signup_handler(**signup_params(), return_state=True)

    assert state.is_completed(), state
    fake = signup_env.state()
    steps = by_step(fake["emails"])
    assert sorted(steps) == sorted(STEP_DELAYS)
    assert all(len(sent) == 1 for sent in steps.values())
    sends = [r for r in fake["requests"] if r["path"] == "/emails"]
    assert [r["status"] for r in sends] == [200, 500, 200, 200, 200]
    # the retry repeated only the failed send, with the same idempotency key
    assert sends[1]["idempotency_key"] == sends[2]["idempotency_key"]
    assert sends[0]["idempotency_key"].startswith("welcome/")
    assert plain(fake["pages"][0])["Sequence Status"] == "Scheduled"


def test_resend_auth_error_is_not_retried(signup_env, monkeypatch):
    monkeypatch.setenv("RESEND_API_KEY", "re_wrong")
    state = christmas_signup_handler(**signup_params(), return_state=True)

    assert state.is_failed()
    fake = signup_env.state()
    sends = [r for r in fake["requests"] if r["path"] == "/emails"]
    assert [r["status"] for r in sends] == [403]
    assert fake["emails"] == []
    assert plain(fake["pages"][0])["Sequence Status"] == "Partial"


def test_partial_failure_is_completed_by_the_next_signup(signup_env, monkeypatch):
    monkeypatch.setenv("SIGNUP_RETRIES", "1")
    signup_env.faults(
        {
            "service": "resend",
            "method": "POST",
            "path": "/emails",
            "skip": 1,
            "status": 503,
            "count": 2,
        }
    )
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_failed()
    fake = signup_env.state()
    page = plain(fake["pages"][0])
    assert page["Sequence Status"] == "Partial"
    assert list(parse_email_ids(page["Scheduled Email IDs"])) == ["welcome"]
    assert len(fake["emails"]) == 1

    result = christmas_signup_handler(**signup_params())
    fake = signup_env.state()
    assert sorted(result["sent"]) == ["day-10-offer", "day-2-fixes", "day-5-story"]
    steps = by_step(fake["emails"])
    assert all(len(sent) == 1 for sent in steps.values())
    assert len(steps) == 4
    assert plain(fake["pages"][0])["Sequence Status"] == "Scheduled"
    welcome_sends = [
        r for r in fake["requests"] if (r["idempotency_key"] or "").startswith("welcome/")
    ]
    assert len(welcome_sends) == 1


@pytest.fixture
def concurrency_limits(signup_locks):
    """The global concurrency limits the deploy creates, for one test (the locks are
    there for the whole session)."""
    rates = [limit for limit in CONCURRENCY_LIMITS if limit not in signup_locks]
    with get_client(sync_client=True) as client:
        for limit in rates:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(**limit))
    yield CONCURRENCY_LIMITS
    with get_client(sync_client=True) as client:
        for limit in rates:
            client.delete_global_concurrency_limit_by_name(limit["name"])


def test_shared_rate_limits_space_the_requests(signup_env, concurrency_limits):
    assert {"notion-api", "resend-api"} <= {limit["name"] for limit in concurrency_limits}
    started = time.monotonic()
    for n in range(6):
        assert call_api("resend-api", lambda n=n: n) == n
    # burst of 2, then 2 per second
    assert time.monotonic() - started >= 1.5

    # The signup half at one request a second for both services, slower than a run goes
    # by itself, so only the limits keep it within the fake's rates: the fake refuses
    # (429) past them as the real services do, and a paced run is never refused.
    with get_client(sync_client=True) as client:
        for name in ("notion-api", "resend-api"):
            client.update_global_concurrency_limit(
                name,
                GlobalConcurrencyLimitUpdate(limit=RATE_SLOTS, slot_decay_per_second=RATE_SLOTS),
            )
    signup_env.config(notion_rate=1, notion_burst=1, resend_rate=1, resend_burst=1)
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_completed(), state
    fake = signup_env.state()
    assert len(fake["pages"]) == 1
    assert len(by_step(fake["emails"])) == 4
    assert [r["path"] for r in fake["requests"] if r["status"] == 429] == []
    for service in ("notion", "resend"):
        times = [
            datetime.fromisoformat(r["at"]) for r in fake["requests"] if r["service"] == service
        ]
        # One request a second at most (10% for clock rounding).
        assert (times[-1] - times[0]).total_seconds() >= (len(times) - 1) * 0.9, service


def test_missing_limits_do_not_block(prefect_harness):
    started = time.monotonic()
    for _ in range(10):
        assert call_api("no-such-limit", lambda: "answer") == "answer"
    assert time.monotonic() - started < 5


def test_a_limit_that_cannot_give_a_turn_is_a_transient_error(prefect_harness):
    # A limit still at settings older than the flow's (a deploy in progress): the task
    # retries and the recovery runs the signup again, it is not abandoned.
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="too-small", limit=1, slot_decay_per_second=1.0)
        )
    try:
        with pytest.raises(TransientSignupError, match="too-small"):
            call_api("too-small", lambda: "never")
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name("too-small")


def test_dry_run_renders_and_calls_nothing(signup_env):
    result = christmas_signup_handler(**signup_params(), dry_run=True)
    assert signup_env.state()["requests"] == []
    assert result["dry_run"] is True
    assert result["segment"] == "critical"
    assert [e["step"] for e in result["emails"]] == list(STEP_DELAYS)
    assert all(e["html_chars"] > 0 and e["text_chars"] > 0 for e in result["emails"])
    assert result["secrets_present"] == {
        "NOTION_TOKEN": True,
        "NOTION_DATABASE_ID": True,
        "RESEND_API_KEY": True,
        "RESEND_FROM": True,
    }


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"red_systems": -1}, "red_systems"),
        ({"assessment_score": 101}, "assessment_score"),
        ({"first_name": ""}, "first_name"),
        (
            {"red_systems": 0, "orange_systems": 0, "yellow_systems": 0, "green_systems": 0},
            "red_systems",
        ),
    ],
)
def test_invalid_input_fails_before_any_http_call(signup_env, override, field):
    state = christmas_signup_handler(**signup_params(**override), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=field):
        state.result()
    assert signup_env.state()["requests"] == []


def test_unknown_parameter_fails_before_any_http_call(signup_env):
    state = run_flow(
        christmas_signup_handler,
        parameters={**signup_params(), "favourite_colour": "red"},
        return_type="state",
    )
    assert state.is_failed()
    with pytest.raises(Exception, match="favourite_colour"):
        state.result()
    assert signup_env.state()["requests"] == []


@pytest.mark.parametrize(
    ("variable", "block"),
    [
        ("NOTION_TOKEN", "notion-token"),
        ("NOTION_DATABASE_ID", "notion-database-id"),
        ("RESEND_API_KEY", "resend-api-key"),
        ("RESEND_FROM", "resend-from"),
    ],
)
def test_missing_secret_fails_before_any_http_call(signup_env, monkeypatch, variable, block):
    monkeypatch.delenv(variable)
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=f"{variable}.*{block}"):
        state.result()
    assert signup_env.state()["requests"] == []


def test_secret_block_is_used_when_env_is_missing(signup_env, monkeypatch):
    Secret(value=SENDER).save("resend-from", overwrite=True)
    try:
        monkeypatch.delenv("RESEND_FROM")
        state = christmas_signup_handler(**signup_params(), return_state=True)
        assert state.is_completed(), state
        assert all(e["from"] == SENDER for e in signup_env.state()["emails"])
    finally:
        Secret.delete("resend-from")


def test_idempotency_keys_fit_resend_for_the_longest_address():
    longest = "a" * 64 + "@" + ("b" * 63 + ".") * 2 + "c" * 7  # 200 characters, the most
    assert len(longest) == 200
    keys = [idempotency_key(step, longest) for step in STEP_DELAYS]
    assert max(len(key) for key in keys) <= 256
    assert len(set(keys)) == 4
    assert longest not in keys[0]  # no address in keys (they end up in logs)


def test_each_email_is_recorded_as_soon_as_it_is_sent(signup_env, monkeypatch):
    """A run that stops after a send but before recording it: the next run resends that
    step with the same key (Resend answers with the original email), then goes on."""
    monkeypatch.setenv("SIGNUP_RETRIES", "0")
    signup_env.faults(
        # the record of the welcome email: the first PATCH after the page was created
        {"service": "notion", "method": "PATCH", "path": "/v1/pages/", "status": 502}
    )
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_failed()
    assert "TransientSignupError" in state.message
    fake = signup_env.state()
    assert [e["idempotency_key"].split("/")[0] for e in fake["emails"]] == ["welcome"]
    assert parse_email_ids(plain(fake["pages"][0])["Scheduled Email IDs"]) == {}

    result = christmas_signup_handler(**signup_params())
    fake = signup_env.state()
    steps = by_step(fake["emails"])
    assert sorted(steps) == sorted(STEP_DELAYS)
    assert all(len(sent) == 1 for sent in steps.values())
    assert result["sent"]["welcome"] == steps["welcome"][0]["id"]
    page = plain(fake["pages"][0])
    assert parse_email_ids(page["Scheduled Email IDs"]) == {s: e[0]["id"] for s, e in steps.items()}
    assert page["Sequence Status"] == "Scheduled"
    # every send was followed by its record (one PATCH per email, plus the profile update)
    patches = [r for r in fake["requests"] if r["method"] == "PATCH" and r["status"] == 200]
    assert len(patches) == 1 + 4


def test_a_run_resumes_at_the_first_unsent_step(signup_env, monkeypatch):
    monkeypatch.setenv("SIGNUP_RETRIES", "0")
    signup_env.faults(
        {"service": "resend", "method": "POST", "path": "/emails", "skip": 2, "status": 500}
    )
    assert christmas_signup_handler(**signup_params(), return_state=True).is_failed()
    page = plain(signup_env.state()["pages"][0])
    assert sorted(parse_email_ids(page["Scheduled Email IDs"])) == ["day-2-fixes", "welcome"]
    assert page["Sequence Status"] == "Partial"

    result = christmas_signup_handler(**signup_params())
    assert sorted(result["sent"]) == ["day-10-offer", "day-5-story"]
    sends = [r for r in signup_env.state()["requests"] if r["path"] == "/emails"]
    assert [r["idempotency_key"].split("/")[0] for r in sends] == [
        "welcome",
        "day-2-fixes",
        "day-5-story",  # the 500
        "day-5-story",
        "day-10-offer",
    ]


def test_resend_concurrent_request_409_is_retried(signup_env):
    signup_env.faults(
        {"service": "resend", "method": "POST", "path": "/emails", "skip": 1, "status": 409}
    )
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_completed(), state
    sends = [r["status"] for r in signup_env.state()["requests"] if r["path"] == "/emails"]
    assert sends == [200, 409, 200, 200, 200]


def test_a_permanent_error_is_not_marked_transient(signup_env):
    signup_env.faults({"service": "resend", "status": 403, "count": 1})
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_failed()
    assert "TransientSignupError" not in (state.message or "")
    assert "SequenceSendError" in state.message


def test_a_missing_lock_fails_the_run_before_any_call_and_is_not_retried(signup_env):
    lock = next(
        limit
        for limit in CONCURRENCY_LIMITS
        if limit["name"] == signup_lock_name(signup_params()["email"].lower())
    )
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(lock["name"])
    try:
        state = christmas_signup_handler(**signup_params(), return_state=True)
    finally:
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(**lock))
    assert state.is_failed()
    assert "SignupLockMissingError" in state.message
    assert lock["name"] in state.message
    assert "TransientSignupError" not in state.message
    assert signup_env.state()["requests"] == []


def test_the_lock_is_free_once_the_run_ends(signup_env):
    name = signup_lock_name(signup_params()["email"].lower())
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_completed(), state
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 0


def test_an_outage_longer_than_the_task_retries_fails_as_transient(signup_env):
    signup_env.faults({"service": "notion", "status": 503, "seconds": 30})
    state = christmas_signup_handler(**signup_params(), return_state=True)
    assert state.is_failed()
    assert "TransientSignupError" in state.message
    assert signup_env.state()["emails"] == []


def test_two_identical_signups_at_the_same_instant_make_one_page_and_one_sequence(
    signup_env, concurrency_limits
):
    signup_env.config(resend_processing_seconds=0.5)
    # creating a page takes seconds: without the lock both runs find no contact
    signup_env.faults(
        {"service": "notion", "method": "POST", "path": "/v1/pages", "status": None, "delay": 4}
        | {"count": 2}
    )
    states = []
    threads = [
        threading.Thread(
            target=lambda: states.append(
                christmas_signup_handler(**signup_params(), return_state=True)
            )
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(states) == 2
    assert all(state.is_completed() for state in states), states
    fake = signup_env.state()
    assert len(fake["pages"]) == 1
    steps = by_step(fake["emails"])
    assert sorted(steps) == sorted(STEP_DELAYS)
    assert all(len(sent) == 1 for sent in steps.values())
