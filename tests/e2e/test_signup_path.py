"""The main job end to end on a fresh sandbox host: website -> door -> Prefect -> worker ->
flow -> (fake) Notion and Resend, provisioned by site.yml exactly as `make up` does."""

from __future__ import annotations

import re
import shutil
import uuid

import pytest
from christmas_signup.emails import idempotency_key

from tests.sandbox import ROOT, sample_signup

pytestmark = pytest.mark.e2e


def test_the_recorded_ids_are_the_servers(sandbox):
    ids = sandbox.recorded_ids()
    deployment = sandbox.api("GET", f"/deployments/{ids['prefect_deploy_deployment_id']}")
    assert deployment["flow_id"] == ids["prefect_deploy_flow_id"]
    flow = sandbox.api("GET", f"/flows/{ids['prefect_deploy_flow_id']}")
    assert flow["name"] == "christmas-signup-handler"


def test_a_signup_through_the_door_records_the_contact_and_sends_the_sequence(sandbox):
    sandbox.fake("POST", "/reset")
    key = str(uuid.uuid4())
    answer = sandbox.signup(sample_signup(), key=key)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["flow_run_id"]

    run = sandbox.wait_run(run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    state = sandbox.fake("GET", "/state")
    [page] = state["pages"]
    assert page["properties"]["Email"]["email"] == "ada@example.com"
    assert page["properties"]["Segment"]["select"]["name"] == "Critical"  # 2 red systems
    assert page["properties"]["Sequence Status"]["select"]["name"] == "Scheduled"
    sent = {e["idempotency_key"]: e for e in state["emails"]}
    assert sorted(sent) == sorted(
        idempotency_key(step, "ada@example.com")
        for step in ("welcome", "day-2-fixes", "day-5-story", "day-10-offer")
    )
    assert sent[idempotency_key("welcome", "ada@example.com")]["scheduled_at"] is None  # now
    assert all(e["scheduled_at"] for key, e in sent.items() if not key.startswith("welcome/"))

    again = sandbox.signup(sample_signup(), key=key)
    assert again.status_code == 202
    assert again.json()["flow_run_id"] == run_id


def test_an_invalid_signup_is_refused_and_starts_no_run(sandbox):
    before = sandbox.count_runs()
    answer = sandbox.signup({**sample_signup(), "assessment_score": "high"})
    assert answer.status_code == 422, answer.text
    assert "assessment_score" in answer.text
    # An address Notion's email property could never hold (201 characters).
    answer = sandbox.signup({**sample_signup(), "email": "a" * 191 + "@b.example"})
    assert answer.status_code == 422, answer.text
    assert answer.json() == {"error": "must be at most 200 characters", "field": "email"}
    assert sandbox.count_runs() == before


def test_a_second_site_run_changes_nothing(sandbox):
    result = sandbox.playbook("site.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    recap = re.search(rf"{re.escape(sandbox.host)}\s*:\s*ok=\d+\s+changed=(\d+)", result.stdout)
    tasks = result.stdout.split("TASK [")[1:]
    changed = [task.split("]")[0] for task in tasks if "\nchanged: " in task]
    assert recap and recap.group(1) == "0", changed


def test_a_broken_release_is_rolled_back_and_the_door_keeps_working(sandbox, tmp_path):
    broken = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", broken, ignore=shutil.ignore_patterns("__pycache__"))
    flow_py = broken / "christmas_signup" / "flow.py"
    source = flow_py.read_text()
    marker = "    logger = get_run_logger()\n"
    assert marker in source
    # Imports and registers fine, fails when it runs: only the smoke test can catch it.
    flow_py.write_text(source.replace(marker, "    raise RuntimeError('broken release')\n", 1))

    serving = sandbox.exec("readlink", "/opt/galatek-flows/current")
    result = sandbox.playbook("playbooks/deploy.yml", "-e", f"prefect_deploy_flows_src={broken}")
    assert result.returncode != 0
    assert "Rolled back" in result.stdout, result.stdout[-3000:]
    assert sandbox.exec("readlink", "/opt/galatek-flows/current") == serving

    answer = sandbox.signup(sample_signup("grace@example.com"))
    assert answer.status_code == 202, answer.text
    run = sandbox.wait_run(answer.json()["flow_run_id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
