"""The production rehearsal: docs/production.md's steps, as written, on a fresh host
(tests/rehearsal.py says what stands in for the world). A new operator's first run."""

from __future__ import annotations

import re
import socket
import ssl
import uuid

import pytest

from tests.rehearsal import HOST, Rehearsal
from tests.sandbox import DOOR, STEPS, sample_signup

pytestmark = [pytest.mark.e2e, pytest.mark.fresh]


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    box = Rehearsal(tmp_path_factory.mktemp("rehearsal"))
    box.down()
    try:
        box.up()
        yield box
    finally:
        box.down()


def changed_tasks(output: str) -> tuple[str | None, list[str]]:
    """The recap's changed count for the host, and the names of the tasks that changed."""
    recap = re.search(rf"{re.escape(HOST)}\s*:\s*ok=\d+\s+changed=(\d+)", output)
    tasks = output.split("TASK [")[1:]
    return (recap.group(1) if recap else None), [
        task.split("]")[0] for task in tasks if "\nchanged: " in task
    ]


def test_site_yml_provisions_a_fresh_host_with_the_production_inventory(production):
    assert production.site.returncode == 0, (
        production.site.stdout[-6000:] + production.site.stderr[-2000:]
    )
    recap = re.search(
        rf"{re.escape(HOST)}\s*:\s*ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0",
        production.site.stdout,
    )
    assert recap, production.site.stdout[-2000:]


def test_the_edge_serves_a_lets_encrypt_certificate_for_the_public_name(production):
    context = ssl.create_default_context(cadata=production.ca_pem())
    with context.wrap_socket(
        socket.create_connection((production.ip, 443), timeout=10),
        server_hostname=HOST,
    ) as tls:
        cert = tls.getpeercert()
    issuer = dict(item[0] for item in cert["issuer"])
    assert "Pebble" in issuer["commonName"]
    assert ("DNS", HOST) in cert["subjectAltName"]


def test_the_ids_land_where_the_docs_say(production):
    ids = production.recorded_ids()
    deployment = production.api("GET", f"/deployments/{ids['prefect_deploy_deployment_id']}")
    assert deployment["flow_id"] == ids["prefect_deploy_flow_id"]
    website = (production.inventory / "artifacts" / "website.env").read_text()
    assert f"SIGNUP_WEBHOOK_URL=https://{HOST}{DOOR}" in website


def test_a_signup_through_the_door_completes_with_its_four_emails(production):
    email = "grace@example.com"
    answer = production.signup_patiently(sample_signup(email), key=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    run = production.wait_run(answer.json()["flow_run_id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    got = production.received(email)
    assert len(got["pages"]) == 1
    assert len(got["emails"]) == STEPS
    assert len({e["idempotency_key"] for e in got["emails"]}) == STEPS


def test_the_on_call_rerun_of_the_deploy_changes_nothing(production):
    result = production.playbook("playbooks/deploy.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    count, tasks = changed_tasks(result.stdout)
    assert count == "0", tasks


def test_site_yml_in_check_mode_has_nothing_to_change(production):
    result = production.playbook("site.yml", "--check", "--diff")
    assert result.returncode == 0, result.stdout[-4000:]
    count, tasks = changed_tasks(result.stdout)
    assert count == "0", tasks
