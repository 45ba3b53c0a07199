"""The fake follows the real APIs' documented behaviour (not our code's needs)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fake_saas import (
    DEFAULT_DATA_SOURCE_ID,
    DEFAULT_DATABASE_ID,
    DEFAULT_NOTION_TOKEN,
    DEFAULT_RESEND_API_KEY,
    DEFAULT_RESEND_SENDING_API_KEY,
    FakeSaaS,
)

NOTION = {"Authorization": f"Bearer {DEFAULT_NOTION_TOKEN}", "Notion-Version": "2025-09-03"}
RESEND = {"Authorization": f"Bearer {DEFAULT_RESEND_API_KEY}"}


def call(fake, method: str, path: str, headers: dict[str, str], body: Any = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        fake.base_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def email(**extra: Any) -> dict[str, Any]:
    return {"from": "a@example.com", "to": "b@example.com", "subject": "Hi", "text": "x", **extra}


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def test_notion_auth_and_version_headers(fake_saas):
    path = f"/v1/databases/{DEFAULT_DATABASE_ID}"
    status, _, body = call(
        fake_saas, "GET", path, {"Authorization": "Bearer nope", **{"Notion-Version": "2025-09-03"}}
    )
    assert (status, body["object"], body["code"]) == (401, "error", "unauthorized")
    status, _, body = call(fake_saas, "GET", path, {"Authorization": NOTION["Authorization"]})
    assert (status, body["code"]) == (400, "missing_version")
    status, _, body = call(fake_saas, "GET", path, NOTION)
    assert status == 200
    assert body["data_sources"][0]["id"] == DEFAULT_DATA_SOURCE_ID


def test_notion_pages_query_and_pagination(fake_saas):
    for n in range(3):
        status, _, page = call(
            fake_saas,
            "POST",
            "/v1/pages",
            NOTION,
            {
                "parent": {"type": "data_source_id", "data_source_id": DEFAULT_DATA_SOURCE_ID},
                "properties": {
                    "Email": {"email": f"p{n}@example.com"},
                    "Name": {"title": [{"text": {"content": f"P{n}"}}]},
                    "Assessment Score": {"number": n},
                },
            },
        )
        assert status == 200
        assert page["object"] == "page"
        assert page["properties"]["Name"]["title"][0]["plain_text"] == f"P{n}"
    query = f"/v1/data_sources/{DEFAULT_DATA_SOURCE_ID}/query"
    status, _, first = call(fake_saas, "POST", query, NOTION, {"page_size": 2})
    assert (status, first["object"], len(first["results"]), first["has_more"]) == (
        200,
        "list",
        2,
        True,
    )
    _, _, rest = call(
        fake_saas, "POST", query, NOTION, {"page_size": 2, "start_cursor": first["next_cursor"]}
    )
    assert (len(rest["results"]), rest["has_more"], rest["next_cursor"]) == (1, False, None)
    _, _, found = call(
        fake_saas,
        "POST",
        query,
        NOTION,
        {"filter": {"property": "Email", "email": {"equals": "p1@example.com"}}},
    )
    assert [p["properties"]["Assessment Score"]["number"] for p in found["results"]] == [1]
    status, _, body = call(
        fake_saas,
        "POST",
        "/v1/pages",
        NOTION,
        {
            "parent": {"data_source_id": DEFAULT_DATA_SOURCE_ID},
            "properties": {"Nope": {"number": 1}},
        },
    )
    assert (status, body["code"]) == (400, "validation_error")


def test_notion_rate_limit_answers_429_with_retry_after(fake_saas):
    fake_saas.config(notion_rate=1, notion_burst=1)
    path = f"/v1/databases/{DEFAULT_DATABASE_ID}"
    assert call(fake_saas, "GET", path, NOTION)[0] == 200
    status, headers, body = call(fake_saas, "GET", path, NOTION)
    assert (status, body["code"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) >= 1


def test_resend_rate_limit_answers_429_with_retry_after(fake_saas):
    fake_saas.config(resend_rate=2, resend_burst=2)
    answers = [call(fake_saas, "POST", "/emails", RESEND, email()) for _ in range(3)]
    assert [status for status, _, _ in answers[:2]] == [200, 200]
    status, headers, body = answers[2]
    assert (status, body["name"], body["statusCode"]) == (429, "rate_limit_exceeded", 429)
    assert int(headers["Retry-After"]) >= 1


@pytest.mark.parametrize(("service", "rate", "burst"), [("notion", 3, 10), ("resend", 2, 2)])
def test_the_default_limits_hold_the_documented_average(service, rate, burst):
    # Notion: an average of 3 requests/s, some bursts allowed; Resend: 2 requests/s per team.
    state = FakeSaaS()
    assert (state.rates[f"{service}_rate"], state.rates[f"{service}_burst"]) == (rate, burst)
    started = time.monotonic()
    served = 0
    while time.monotonic() - started < 2:
        served += state.throttle(service, "token") == 0
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert burst + rate * elapsed - 2 <= served <= burst + rate * elapsed


def test_resend_auth(fake_saas):
    status, _, body = call(fake_saas, "POST", "/emails", {}, email())
    assert (status, body["name"]) == (401, "missing_api_key")
    status, _, body = call(fake_saas, "POST", "/emails", {"Authorization": "Bearer x"}, email())
    assert (status, body["name"], body["statusCode"]) == (403, "invalid_api_key", 403)


def test_resend_idempotency_key(fake_saas):
    key = {**RESEND, "Idempotency-Key": "welcome/b@example.com"}
    status, _, first = call(fake_saas, "POST", "/emails", key, email())
    assert status == 200
    _, _, again = call(fake_saas, "POST", "/emails", key, email())
    assert again["id"] == first["id"]
    status, _, body = call(fake_saas, "POST", "/emails", key, email(subject="Other"))
    assert (status, body["name"]) == (409, "invalid_idempotent_request")
    assert len(fake_saas.state()["emails"]) == 1


@pytest.mark.parametrize(
    ("scheduled_at", "status"),
    [("tomorrow-ish", 422), (in_days(-1), 422), (in_days(31), 422), (in_days(29), 200)],
)
def test_resend_scheduled_at(fake_saas, scheduled_at, status):
    assert call(fake_saas, "POST", "/emails", RESEND, email(scheduled_at=scheduled_at))[0] == status


def test_faults_queue(fake_saas):
    fake_saas.faults({"service": "resend", "path": "/emails", "skip": 1, "status": 500})
    statuses = [call(fake_saas, "POST", "/emails", RESEND, email())[0] for _ in range(3)]
    assert statuses == [200, 500, 200]
    assert fake_saas.state()["faults"] == []


def test_resend_idempotency_key_length(fake_saas):
    longest = {**RESEND, "Idempotency-Key": "k" * 256}
    assert call(fake_saas, "POST", "/emails", longest, email())[0] == 200
    status, _, body = call(
        fake_saas, "POST", "/emails", {**RESEND, "Idempotency-Key": "k" * 257}, email()
    )
    assert (status, body["name"]) == (400, "invalid_idempotency_key")


def test_resend_same_key_while_in_progress_answers_409_concurrent(fake_saas):
    fake_saas.config(resend_processing_seconds=1)
    key = {**RESEND, "Idempotency-Key": "welcome/x"}
    answers = []
    first = threading.Thread(
        target=lambda: answers.append(call(fake_saas, "POST", "/emails", key, email()))
    )
    first.start()
    time.sleep(0.3)
    status, _, body = call(fake_saas, "POST", "/emails", key, email())
    first.join()
    assert (status, body["name"]) == (409, "concurrent_idempotent_requests")
    assert answers[0][0] == 200
    # once the first is done, the same request answers with the original email
    _, _, again = call(fake_saas, "POST", "/emails", key, email())
    assert again["id"] == answers[0][2]["id"]
    assert len(fake_saas.state()["emails"]) == 1


def test_an_outage_fault_lasts_its_seconds(fake_saas):
    fake_saas.faults({"service": "resend", "status": 503, "seconds": 1})
    assert [call(fake_saas, "POST", "/emails", RESEND, email())[0] for _ in range(3)] == [503] * 3
    time.sleep(1.1)
    assert call(fake_saas, "POST", "/emails", RESEND, email())[0] == 200


def test_slack_style_webhook(fake_saas):
    request = urllib.request.Request(
        fake_saas.base_url + "/services/T000/B000/XXXX",
        data=json.dumps({"text": "hello"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert (response.status, response.read()) == (200, b"ok")
    [hook] = fake_saas.state()["webhooks"]
    assert hook["body"] == {"text": "hello"}
    assert hook["path"] == "/services/T000/B000/XXXX"


# -- failures and limits the real services have (README: "Faults", "Limits") -----------

PAGES = "/v1/pages"
QUERY = f"/v1/data_sources/{DEFAULT_DATA_SOURCE_ID}/query"


def page(**properties: Any) -> dict[str, Any]:
    return {
        "parent": {"type": "data_source_id", "data_source_id": DEFAULT_DATA_SOURCE_ID},
        "properties": properties or {"Email": {"email": "a@example.com"}},
    }


def found(fake, address: str = "a@example.com") -> int:
    body = {"filter": {"property": "Email", "email": {"equals": address}}}
    return len(call(fake, "POST", QUERY, NOTION, body)[2]["results"])


def test_a_fault_after_the_work_keeps_the_work_and_loses_the_answer(fake_saas):
    fake_saas.faults({"service": "notion", "method": "POST", "path": PAGES, "after": True})
    status, _, body = call(fake_saas, "POST", PAGES, NOTION, page())
    assert (status, body["code"]) == (500, "internal_server_error")
    assert len(fake_saas.state()["pages"]) == 1  # created all the same
    fake_saas.faults({"service": "resend", "after": True, "status": 502})
    status, _, _ = call(fake_saas, "POST", "/emails", RESEND, email())
    assert status == 502
    assert len(fake_saas.state()["emails"]) == 1
    assert [r["fault"] for r in fake_saas.requests()] == ["after", "after"]


def test_a_dropped_connection_and_a_late_answer(fake_saas):
    fake_saas.faults(
        {"service": "resend", "after": True, "drop": True},
        {"service": "resend", "after": True, "status": None, "delay": 1.0},
    )
    request = urllib.request.Request(
        fake_saas.base_url + "/emails",
        data=json.dumps(email()).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **RESEND},
    )
    with pytest.raises((ConnectionError, urllib.error.URLError, OSError)):
        urllib.request.urlopen(request, timeout=5)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(request, timeout=0.3)
    time.sleep(1.0)
    assert len(fake_saas.state()["emails"]) == 2  # both were sent


def test_a_fault_can_carry_the_error_name_message_and_body(fake_saas):
    fake_saas.faults(
        {"service": "notion", "status": 409, "name": "conflict_error", "message": "Try again"},
        {"service": "resend", "status": 429, "body": {"statusCode": 429, "name": "x"}},
    )
    _, _, body = call(fake_saas, "POST", PAGES, NOTION, page())
    assert (body["status"], body["code"], body["message"]) == (409, "conflict_error", "Try again")
    assert call(fake_saas, "POST", "/emails", RESEND, email())[2] == {
        "statusCode": 429,
        "name": "x",
    }
    fake_saas.faults({"service": "notion", "status": 529})
    assert call(fake_saas, "POST", PAGES, NOTION, page())[2]["code"] == "service_overload"


def test_notion_query_lag_hides_a_new_page_for_a_while(fake_saas):
    fake_saas.config(notion_query_lag_seconds=1)
    assert call(fake_saas, "POST", PAGES, NOTION, page())[0] == 200
    assert found(fake_saas) == 0
    time.sleep(1.1)
    assert found(fake_saas) == 1


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"Email": {"email": "a" * 191 + "@b.example"}}, "length should be ≤ `200`"),
        (
            {"Business": {"rich_text": [{"text": {"content": "x" * 2001}}]}},
            "rich_text[0].text.content.length should be ≤ `2000`",
        ),
        (
            {"Business": {"rich_text": [{"text": {"content": "x"}}] * 101}},
            "rich_text.length should be ≤ `100`",
        ),
    ],
    ids=["email-200", "text-2000", "rich-text-100-items"],
)
def test_notion_size_limits(fake_saas, properties, message):
    fits = page(Email={"email": "a" * 190 + "@b.example"})  # 200 characters
    assert call(fake_saas, "POST", PAGES, NOTION, fits)[0] == 200
    status, _, body = call(fake_saas, "POST", PAGES, NOTION, page(**properties))
    assert (status, body["code"]) == (400, "validation_error")
    assert message in body["message"]


def test_a_trashed_page_refuses_edits_until_restored(fake_saas):
    page_id = call(fake_saas, "POST", PAGES, NOTION, page())[2]["id"]
    edit = {"properties": {"Assessment Score": {"number": 1}}}
    assert call(fake_saas, "PATCH", f"{PAGES}/{page_id}", NOTION, {"in_trash": True})[0] == 200
    status, _, body = call(fake_saas, "PATCH", f"{PAGES}/{page_id}", NOTION, edit)
    assert (status, body["code"]) == (400, "validation_error")
    assert found(fake_saas) == 0
    assert call(fake_saas, "PATCH", f"{PAGES}/{page_id}", NOTION, {"in_trash": False})[0] == 200
    assert call(fake_saas, "PATCH", f"{PAGES}/{page_id}", NOTION, edit)[0] == 200


def test_a_status_property_takes_only_its_options(fake_saas):
    fake_saas.config(
        notion_schema={"Sequence Status": {"type": "status", "options": ["Pending", "Done"]}}
    )
    source = call(fake_saas, "GET", f"/v1/data_sources/{DEFAULT_DATA_SOURCE_ID}", NOTION, None)[2]
    prop = source["properties"]["Sequence Status"]
    assert prop["type"] == "status"
    assert [o["name"] for o in prop["status"]["options"]] == ["Pending", "Done"]
    ok = page(**{"Sequence Status": {"status": {"name": "Pending"}}})
    assert call(fake_saas, "POST", PAGES, NOTION, ok)[0] == 200
    for wrong in ({"status": {"name": "Scheduled"}}, {"select": {"name": "Pending"}}):
        status, _, _ = call(fake_saas, "POST", PAGES, NOTION, page(**{"Sequence Status": wrong}))
        assert status == 400


def test_resend_refuses_an_unverified_sender_domain(fake_saas):
    fake_saas.config(resend_domains={"example.com": "verified", "pending.dev": "pending"})
    assert (
        call(fake_saas, "POST", "/emails", RESEND, email(**{"from": "A <a@example.com>"}))[0] == 200
    )
    status, _, body = call(fake_saas, "POST", "/emails", RESEND, email(**{"from": "a@pending.dev"}))
    assert (status, body["name"]) == (403, "validation_error")
    assert "pending.dev domain is not verified" in body["message"]
    _, _, domains = call(fake_saas, "GET", "/domains", RESEND)
    assert {d["name"]: d["status"] for d in domains["data"]} == {
        "example.com": "verified",
        "pending.dev": "pending",
    }


def test_resend_daily_quota(fake_saas):
    fake_saas.config(resend_daily_quota=1)
    assert (
        call(
            fake_saas,
            "POST",
            "/emails",
            RESEND,
            email(),
        )[0]
        == 200
    )
    status, _, body = call(fake_saas, "POST", "/emails", RESEND, email(subject="2"))
    assert (status, body["name"]) == (429, "daily_quota_exceeded")
    fake_saas.config(resend_daily_quota=0)
    assert call(fake_saas, "POST", "/emails", RESEND, email(subject="2"))[0] == 200


def test_a_sending_only_key_may_only_send(fake_saas):
    sending = {"Authorization": f"Bearer {DEFAULT_RESEND_SENDING_API_KEY}"}
    scheduled = email(scheduled_at="in 2 hours")
    status, _, sent = call(fake_saas, "POST", "/emails", sending, scheduled)
    assert status == 200
    for method, path in (
        ("GET", f"/emails/{sent['id']}"),
        ("POST", f"/emails/{sent['id']}/cancel"),
    ):
        status, _, body = call(fake_saas, method, path, sending, {})
        assert (status, body["name"]) == (401, "restricted_api_key")
    assert call(fake_saas, "POST", f"/emails/{sent['id']}/cancel", RESEND, {})[0] == 200
    assert call(fake_saas, "GET", f"/emails/{sent['id']}", RESEND)[2]["last_event"] == "canceled"


@pytest.mark.parametrize(
    ("recipient", "scheduled_at", "status"),
    [
        ("Jane Doe <jane@example.com>", None, 200),
        ("jane@example.com", "in 1 min", 200),
        ("jane@example.com", "in 3 days", 200),
        ("jane@example.com", "in 31 days", 422),
        ("Jane <not-an-address>", None, 422),
    ],
)
def test_resend_accepts_named_recipients_and_natural_language(
    fake_saas, recipient, scheduled_at, status
):
    extra = {} if scheduled_at is None else {"scheduled_at": scheduled_at}
    assert call(fake_saas, "POST", "/emails", RESEND, email(to=[recipient], **extra))[0] == status
