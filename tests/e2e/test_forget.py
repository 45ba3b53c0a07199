"""playbooks/forget.yml on the sandbox: after it, no flow run, log line or Notion page found
through the APIs holds the address, its scheduled emails are cancelled, and a database dump
made afterwards does not hold it either (one made before does)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.sandbox import sample_signup

pytestmark = pytest.mark.e2e

ADDRESS = "forget.me@example.com"
FLOW = "christmas-signup-handler"


def through_the_api(sandbox) -> str:
    """Every signup run, every log line the API gives and every fake Notion page, as text."""
    runs = sandbox.api(
        "POST", "/flow_runs/filter", json={"flows": {"name": {"any_": [FLOW]}}, "limit": 200}
    )
    logs = sandbox.api("POST", "/logs/filter", json={"limit": 200, "sort": "TIMESTAMP_DESC"})
    pages = sandbox.fake("GET", "/state")["pages"]
    return json.dumps([runs, logs, pages]).lower()


def dump_text(sandbox) -> str:
    """A fresh nightly backup, as SQL text."""
    sandbox.exec("systemctl", "start", "prefect-database-backup.service")
    newest = sandbox.exec("sh", "-c", "ls -1t /var/backups/prefect-database/*.dump | head -n 1")
    return sandbox.exec("pg_restore", "--file=-", newest.strip()).lower()


def test_after_forget_no_run_log_page_or_dump_holds_the_address(sandbox):
    sandbox.fake("POST", "/reset")
    answer = sandbox.signup_patiently(sample_signup(ADDRESS), key=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    run = sandbox.wait_run(answer.json()["flow_run_id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert ADDRESS in through_the_api(sandbox)
    assert ADDRESS in dump_text(sandbox)

    started = time.monotonic()
    result = sandbox.playbook("playbooks/forget.yml", "-e", f"email={ADDRESS}")
    took = time.monotonic() - started

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 scheduled emails cancelled" in result.stdout, result.stdout[-3000:]
    assert "1 pages blanked and moved to the trash" in result.stdout
    assert "1 flow runs deleted" in result.stdout
    assert ADDRESS not in result.stdout
    emails = [e for e in sandbox.fake("GET", "/state")["emails"] if e["to"] == [ADDRESS]]
    assert sorted(e["last_event"] for e in emails) == ["canceled"] * 3 + ["delivered"]
    deadline = time.monotonic() + 60
    while ADDRESS in through_the_api(sandbox) and time.monotonic() < deadline:
        time.sleep(2)  # the server deletes a run's logs in a background task
    assert ADDRESS not in through_the_api(sandbox)
    assert ADDRESS not in dump_text(sandbox)
    print(f"forget.yml took {took:.1f} s")

    # A new signup from the address is accepted, records nothing and sends nothing.
    again = sandbox.signup_patiently(sample_signup(ADDRESS), key=str(uuid.uuid4()))
    assert again.status_code == 202, again.text
    run = sandbox.wait_run(again.json()["flow_run_id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    state = sandbox.fake("GET", "/state")
    assert len([e for e in state["emails"] if e["to"] == [ADDRESS]]) == 4
    assert ADDRESS not in json.dumps(state["pages"]).lower()
