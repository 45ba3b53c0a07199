"""forget.py: one person erased from Resend's schedule, Notion and Prefect, against the fake
and a real Prefect server."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import forget
from christmas_signup import privacy
from christmas_signup.flow import christmas_signup_handler
from christmas_signup.notion import parse_email_ids
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogWorker

from .conftest import signup_params

#: Addresses no other test uses: the Prefect server lives for the whole session.
JANE = "jane.forget@example.com"
BOB = "bob.forget@example.com"


def run_forget(address: str, capsys: Any) -> tuple[int, dict[str, Any] | None]:
    code = forget.main(io.StringIO(address))
    out = capsys.readouterr().out.strip()
    return code, (json.loads(out) if out else None)


def signup_runs() -> list[Any]:
    """Every run of the signup flow on the session's server."""
    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[forget.FLOW_NAME])),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return runs


def logs_of(run_ids: list[Any]) -> list[str]:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)))
    return [log.message for log in logs]


def page_of(state: dict[str, Any], page_id: str) -> dict[str, Any]:
    return next(p for p in state["pages"] if p["id"] == page_id)


def test_forget_erases_one_person_and_keeps_only_a_hashed_suppression(
    signup_env, no_suppressions, capsys
):
    jane = christmas_signup_handler(**signup_params(email="Jane.Forget@Example.COM"))
    christmas_signup_handler(**signup_params(email=JANE), dry_run=True)
    christmas_signup_handler(**signup_params(email=BOB, first_name="Bob"))
    APILogWorker.drain_all()
    jane_runs = [r.id for r in signup_runs() if r.parameters["email"].lower() == JANE]
    assert len(jane_runs) == 2
    assert logs_of(jane_runs)
    before = signup_env.state()
    ids = parse_email_ids(
        "".join(
            t["plain_text"]
            for t in page_of(before, jane["page_id"])["properties"]["Scheduled Email IDs"][
                "rich_text"
            ]
        )
    )

    code, report = run_forget(" Jane.Forget@example.com\n", capsys)

    assert code == 0
    assert report == {
        "address": privacy.address_tag(JANE),
        "suppression": "created",
        "emails_cancelled": [ids["day-2-fixes"], ids["day-5-story"], ids["day-10-offer"]],
        "emails_not_scheduled": [ids["welcome"]],
        "pages_trashed": [jane["page_id"]],
        "flow_runs_deleted": sorted((str(r) for r in jane_runs), reverse=True),
    }
    assert JANE not in json.dumps(report)
    after = signup_env.state()
    events = {e["id"]: e["last_event"] for e in after["emails"]}
    assert [events[ids[s]] for s in ("day-2-fixes", "day-5-story", "day-10-offer")] == [
        "canceled"
    ] * 3
    page = page_of(after, jane["page_id"])
    assert page["in_trash"] is True
    assert JANE not in json.dumps(page).lower()
    assert "Doe & Daughters" not in json.dumps(page)
    bob_pages = [p for p in after["pages"] if not p["in_trash"]]
    assert [p["properties"]["Email"]["email"] for p in bob_pages] == [BOB]
    assert [e["last_event"] for e in after["emails"] if e["to"] == [BOB]].count("scheduled") == 3

    remaining = [r for r in signup_runs() if r.parameters["email"] in (JANE, BOB)]
    assert [r.parameters["email"] for r in remaining] == [BOB]
    deadline = time.monotonic() + 20
    while logs_of(jane_runs) and time.monotonic() < deadline:
        time.sleep(0.5)  # the server deletes a run's logs in a background task
    assert logs_of(jane_runs) == []
    assert logs_of([remaining[0].id])

    # A later signup from the address records and sends nothing.
    christmas_signup_handler(**signup_params(email=JANE))
    again = signup_env.state()
    assert len(again["pages"]) == len(after["pages"])
    assert len(again["emails"]) == len(after["emails"])


def test_forget_again_finds_nothing_more(signup_env, no_suppressions, capsys):
    christmas_signup_handler(**signup_params(email=JANE))
    assert run_forget(JANE, capsys)[0] == 0

    code, report = run_forget(JANE, capsys)

    assert code == 0
    assert report is not None
    assert report["suppression"] == "kept"
    assert report["pages_trashed"] == report["flow_runs_deleted"] == []
    assert report["emails_cancelled"] == report["emails_not_scheduled"] == []


def test_forget_refuses_what_is_not_an_address(signup_env, no_suppressions, capsys):
    christmas_signup_handler(**signup_params(email=JANE))

    assert run_forget("not an address", capsys) == (2, None)
    assert run_forget("", capsys) == (2, None)
    assert [r.parameters["email"] for r in signup_runs()].count(JANE) >= 1
    assert [p["in_trash"] for p in signup_env.state()["pages"]] == [False]
