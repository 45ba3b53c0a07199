"""What a signup leaves of the visitor: no typed text in subjects, no address in logs, and
a suppressed address gets nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from christmas_signup import privacy
from christmas_signup.emails import STEPS, render_sequence
from christmas_signup.flow import christmas_signup_handler
from christmas_signup.inputs import Segment, Signup
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogWorker

from .conftest import signup_params

#: Text a visitor could type into each free-text field of the form (each with a marker
#: no subject could hold by chance).
TYPED = {
    "first_name": "URGENT call +1 888 555 0100 xqfirst",
    "business_name": "your PayPal is locked xqbusiness",
    "weakest_system_1": "Verify at evil.example xqweak1",
    "weakest_system_2": "Reply with your password xqweak2",
}
#: System counts that land in each segment.
SEGMENT_COUNTS = {
    Segment.CRITICAL: (2, 0, 0, 0),
    Segment.AT_RISK: (1, 0, 0, 0),
    Segment.STEADY: (0, 1, 1, 1),
    Segment.THRIVING: (0, 0, 0, 3),
}


def run_logs(flow_run_id: object) -> list[str]:
    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


@pytest.mark.parametrize("segment", list(Segment))
def test_no_visitor_typed_text_in_any_subject(segment):
    red, orange, yellow, green = SEGMENT_COUNTS[segment]
    signup = Signup(
        **signup_params(
            **TYPED,
            red_systems=red,
            orange_systems=orange,
            yellow_systems=yellow,
            green_systems=green,
        )
    )
    assert signup.segment == segment
    messages = render_sequence(signup, datetime.now(UTC))

    assert [m.step for m in messages] == [s.name for s in STEPS]
    for message in messages:
        for field, text in TYPED.items():
            marker = text.split()[-1]
            assert marker not in message.subject, (message.step, field, message.subject)
            assert "888" not in message.subject
            assert "PayPal" not in message.subject
    # The bodies still greet the visitor by name.
    assert all(TYPED["first_name"] in m.text for m in messages)


def test_a_subject_naming_a_visitor_field_does_not_render(monkeypatch):
    from christmas_signup import emails  # noqa: PLC0415

    monkeypatch.setattr(
        emails, "STEPS", (emails.Step("welcome", STEPS[0].delay, "{{ first_name }}, hi"),)
    )
    with pytest.raises(Exception, match="first_name"):
        render_sequence(Signup(**signup_params()), datetime.now(UTC))


def test_log_lines_name_the_address_by_its_tag(signup_env):
    params = signup_params()
    address = params["email"].lower()
    tag = privacy.address_tag(address)

    sent = christmas_signup_handler(**params, return_state=True)
    again = christmas_signup_handler(**params, return_state=True)
    dry = christmas_signup_handler(**params, dry_run=True, return_state=True)

    for state in (sent, again, dry):
        messages = run_logs(state.state_details.flow_run_id)
        assert any(tag in m for m in messages), messages
        assert not [m for m in messages if address in m.lower()]


def test_redact_replaces_every_address_by_its_tag():
    text = "Invalid `to` field: ('Jane.Doe@Example.com'), cc bob+x@mail.example.org."
    tag = privacy.address_tag("jane.doe@example.com")
    assert privacy.redact(text) == (
        f"Invalid `to` field: ('<address {tag}>'), "
        f"cc <address {privacy.address_tag('bob+x@mail.example.org')}>."
    )


def test_a_suppressed_address_gets_nothing(signup_env, no_suppressions):
    typed = signup_params()["email"]
    assert privacy.suppress(f"{typed} ", "erased on request") is True
    assert privacy.suppress(typed.lower(), "erased on request") is False

    result = christmas_signup_handler(**signup_params())

    state = signup_env.state()
    assert state["pages"] == []
    assert state["emails"] == []
    assert [r for r in state["requests"] if r["service"] in ("notion", "resend")] == []
    assert result["suppressed"] is True
    assert result["sent"] == {}


def test_the_suppression_entry_holds_no_address(prefect_harness, no_suppressions):
    privacy.suppress("ada@example.com", "erased on request")
    with get_client(sync_client=True) as client:
        [variable] = [v for v in client.read_variables() if privacy.SUPPRESSION_TAG in v.tags]
    assert variable.name == "suppressed-" + privacy.address_hash("ada@example.com")
    assert "ada" not in variable.model_dump_json()
    assert variable.value["reason"] == "erased on request"
