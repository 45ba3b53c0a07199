"""register.py against a real Prefect server started for this module."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from christmas_signup.resilience import CONCURRENCY_LIMITS, RATE_SLOTS
from fake_saas import (
    DEFAULT_DATABASE_ID,
    DEFAULT_NOTION_TOKEN,
    DEFAULT_RESEND_API_KEY,
    DEFAULT_RESEND_SENDING_API_KEY,
)

from .conftest import ROOT, SENDER, signup_params

PREFECT = str(Path(sys.executable).parent / "prefect")
POOL = "signup-pool"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """One call to the test server; its 503 ("busy", SQLite locked under load) is sent again
    after a pause, as Prefect's own client does."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(20):
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 19:
                return exc.code, json.loads(exc.read() or b"null")
            time.sleep(float(exc.headers.get("Retry-After") or 1))
    raise AssertionError("unreachable")


@contextmanager
def server_process(home: Path, **settings: str) -> Iterator[dict[str, str]]:
    """A real Prefect server on SQLite in ``home`` (plus ``settings``); yields the clients'
    environment (the server's own settings left out)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    with (home / "server.log").open("a") as log:
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if api(f"{env['PREFECT_API_URL']}/health")[1] is True:
                        break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((home / "server.log").read_text())
                time.sleep(0.5)
            yield env
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with server_process(tmp_path_factory.mktemp("prefect-home")) as env:
        subprocess.run(
            [PREFECT, "work-pool", "create", POOL, "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
        )
        yield env


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flows directory as the deploy ships it (outside the repository)."""
    target = tmp_path_factory.mktemp("shipped") / "flows"
    shutil.copytree(ROOT / "flows", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def register(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "flows" / "register.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_register_is_idempotent_and_enforces_the_schema(prefect_server, shipped):
    args = ("--source-dir", str(shipped), "--work-pool", POOL)
    first = register(prefect_server, *args)
    second = register(prefect_server, *args)

    assert first == second
    assert set(first) == {
        "flow_id",
        "deployment_id",
        "flow_name",
        "deployment_name",
        "recovery_deployment_id",
    }
    assert first["flow_name"] == "christmas-signup-handler"
    assert first["deployment_name"] == "signup"

    base = prefect_server["PREFECT_API_URL"]
    status, deployment = api(f"{base}/deployments/{first['deployment_id']}")
    assert status == 200
    assert deployment["entrypoint"] == "christmas_signup/flow.py:christmas_signup_handler"
    assert deployment["enforce_parameter_schema"] is True
    assert deployment["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(shipped)}}
    ]
    properties = deployment["parameter_openapi_schema"]["properties"]
    assert properties["assessment_score"]["minimum"] == 0
    assert properties["email"]["maxLength"] == 200  # Notion's email limit

    run_url = f"{base}/deployments/{first['deployment_id']}/create_flow_run"
    status, body = api(run_url, "POST", {"parameters": signup_params(assessment_score="abc")})
    assert status == 409, body
    assert "assessment_score" in json.dumps(body)

    status, body = api(run_url, "POST", {"parameters": signup_params(red_systems=-1)})
    assert status == 409, body

    status, body = api(run_url, "POST", {"parameters": signup_params()})
    assert status == 201, body
    assert api(f"{base}/flow_runs/{body['id']}", "DELETE")[0] == 204


def test_worker_runs_the_deployment_from_the_shipped_code(prefect_server, shipped, fake_saas):
    # As the deploy does: the limits (the signup's lock among them), then the deployment.
    register(prefect_server, "--concurrency-limits")
    ids = register(prefect_server, "--source-dir", str(shipped), "--work-pool", POOL)
    base = prefect_server["PREFECT_API_URL"]
    run_url = f"{base}/deployments/{ids['deployment_id']}/create_flow_run"
    runs = {}
    for name, params in {
        "dry": signup_params(dry_run=True),
        "real": signup_params(email="worker@example.com"),
    }.items():
        status, body = api(run_url, "POST", {"parameters": params})
        assert status == 201, body
        runs[name] = body["id"]

    env = {
        **prefect_server,
        "NOTION_TOKEN": DEFAULT_NOTION_TOKEN,
        "NOTION_DATABASE_ID": DEFAULT_DATABASE_ID,
        "RESEND_API_KEY": DEFAULT_RESEND_API_KEY,
        "RESEND_FROM": SENDER,
        "NOTION_BASE_URL": fake_saas.base_url,
        "RESEND_BASE_URL": fake_saas.base_url,
    }
    worker = subprocess.run(
        [PREFECT, "worker", "start", "--pool", POOL, "--run-once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]

    states = {}
    for name, run_id in runs.items():
        status, run = api(f"{base}/flow_runs/{run_id}")
        assert status == 200
        states[name] = run["state_type"]
    assert states == {"dry": "COMPLETED", "real": "COMPLETED"}, worker.stdout[-3000:]
    fake = fake_saas.state()
    assert [p["properties"]["Email"]["email"] for p in fake["pages"]] == ["worker@example.com"]
    assert len(fake["emails"]) == 4


def test_concurrency_limits_are_created_once(prefect_server):
    base = prefect_server["PREFECT_API_URL"]
    for limit in CONCURRENCY_LIMITS:  # an earlier test may have made them
        api(f"{base}/v2/concurrency_limits/{limit['name']}", "DELETE")
    first = register(prefect_server, "--concurrency-limits")
    second = register(prefect_server, "--concurrency-limits")

    assert first["changed"] is True
    assert {limit["action"] for limit in first["limits"]} == {"created"}
    assert second["changed"] is False
    assert {limit["action"] for limit in second["limits"]} == {"unchanged"}
    settings = {limit["name"]: limit for limit in second["limits"]}
    # requests per second: each request takes RATE_SLOTS slots
    assert settings["notion-api"]["slot_decay_per_second"] / RATE_SLOTS == 3.0
    assert settings["resend-api"]["slot_decay_per_second"] / RATE_SLOTS == 2.0

    base = prefect_server["PREFECT_API_URL"]
    status, limit = api(f"{base}/v2/concurrency_limits/notion-api")
    assert status == 200
    # burst of 3 requests, 3 requests per second
    assert (limit["limit"], limit["slot_decay_per_second"]) == (3 * RATE_SLOTS, 3.0 * RATE_SLOTS)


def set_state(base: str, run_id: str, kind: str, message: str = "") -> None:
    body = {"state": {"type": kind, "message": message}, "force": True}
    status, answer = api(f"{base}/flow_runs/{run_id}/set_state", "POST", body)
    assert status in (200, 201), answer


def run_recovery(env: dict[str, str], shipped: Path, deployment_id: str) -> dict[str, Any]:
    code = (
        "import json, sys; from christmas_signup.recovery import recover_signups; "
        "print(json.dumps(recover_signups(signup_deployment_id=sys.argv[1])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, deployment_id],
        env={**env, "PYTHONPATH": str(shipped)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_automations_are_created_once_and_an_abandoned_signup_alerts_once(
    prefect_server, shipped, fake_saas
):
    ids = register(prefect_server, "--source-dir", str(shipped), "--work-pool", POOL)
    base = prefect_server["PREFECT_API_URL"]
    status, recovery = api(f"{base}/deployments/{ids['recovery_deployment_id']}")
    assert status == 200
    assert recovery["parameters"]["signup_deployment_id"] == ids["deployment_id"]
    assert recovery["global_concurrency_limit"]["limit"] == 1
    assert recovery["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert [s["schedule"]["interval"] for s in recovery["schedules"]] == [60.0]
    status, signup = api(f"{base}/deployments/{ids['deployment_id']}")
    assert signup["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"

    env = {
        **prefect_server,
        "SIGNUP_ALERT_EMAIL": "oncall@galatek.test",
        "SIGNUP_ALERT_WEBHOOK_URL": f"{fake_saas.base_url}/services/T0/B0/secret",
        "RESEND_API_KEY": DEFAULT_RESEND_API_KEY,
        "RESEND_FROM": SENDER,
        "RESEND_BASE_URL": fake_saas.base_url,
    }
    args = ("--automations", "--deployment-id", ids["deployment_id"])
    first = register(env, *args)
    second = register(env, *args)
    assert first["changed"] is True
    assert {i["name"]: i["action"] for i in first["items"]} == {
        "crash-zombie-flow-runs": "created",
        "signup-alert-email": "created",
        "signup-alert-webhook": "created",
        "signup-alert": "created",
    }
    assert second["changed"] is False, second
    status, automations = api(f"{base}/automations/filter", "POST", {})
    zombie = next(a for a in automations if a["name"] == "crash-zombie-flow-runs")
    assert zombie["trigger"]["posture"] == "Proactive"
    assert zombie["trigger"]["within"] == 90.0
    assert zombie["actions"] == [
        {
            "type": "change-flow-run-state",
            "name": None,
            "state": "CRASHED",
            "message": "Flow run marked as crashed due to missing heartbeats.",
            "force": False,
        }
    ]

    runs = {}
    for name in ("permanent", "transient", "crashed"):
        url = f"{base}/deployments/{ids['deployment_id']}/create_flow_run"
        email = f"{name}@example.com"
        status, body = api(url, "POST", {"parameters": signup_params(email=email)})
        assert status == 201, body
        runs[name] = body["id"]
    set_state(base, runs["permanent"], "FAILED", "SequenceSendError: 403 invalid_api_key")
    set_state(base, runs["transient"], "FAILED", "TransientSignupError: Notion 503")
    set_state(base, runs["crashed"], "CRASHED", "missing heartbeats")

    summary = run_recovery(prefect_server, shipped, ids["deployment_id"])
    assert summary["abandoned"] == [runs["permanent"]]
    assert sorted(summary["retried"]) == sorted([runs["transient"], runs["crashed"]])
    states = {n: api(f"{base}/flow_runs/{i}")[1]["state"] for n, i in runs.items()}
    assert (states["permanent"]["type"], states["permanent"]["name"]) == ("FAILED", "Abandoned")
    assert states["transient"]["name"] == states["crashed"]["name"] == "AwaitingRetry"
    # nothing is done twice
    assert run_recovery(prefect_server, shipped, ids["deployment_id"]) == {
        "retried": [],
        "abandoned": [],
    }

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fake = fake_saas.state()
        alerts = [e for e in fake["emails"] if e["to"] == ["oncall@galatek.test"]]
        if alerts and fake["webhooks"]:
            break
        time.sleep(1)
    time.sleep(5)  # a second notification would arrive meanwhile
    fake = fake_saas.state()
    [alert] = [e for e in fake["emails"] if e["to"] == ["oncall@galatek.test"]]
    [hook] = fake["webhooks"]
    assert "permanent@example.com" in alert["subject"]
    assert "403 invalid_api_key" in alert["text"]
    assert "permanent@example.com" in hook["body"]["text"]
    for run_id in runs.values():
        api(f"{base}/flow_runs/{run_id}", "DELETE")


@pytest.mark.parametrize(
    ("key", "domains", "refusal"),
    [
        (DEFAULT_RESEND_API_KEY, {"galatek.dev": "verified"}, None),
        (DEFAULT_RESEND_SENDING_API_KEY, {"galatek.dev": "verified"}, "a sending-only key"),
        (DEFAULT_RESEND_API_KEY, {"galatek.dev": "pending"}, "galatek.dev is not verified"),
        (DEFAULT_RESEND_API_KEY, {"other.dev": "verified"}, "galatek.dev is not a domain"),
        ("re_revoked", {"galatek.dev": "verified"}, "refused by Resend (403 invalid_api_key)"),
    ],
    ids=["verified", "sending-only-key", "unverified-domain", "unknown-domain", "invalid-key"],
)
def test_the_deploy_checks_the_resend_key_and_sender(fake_saas, tmp_path, key, domains, refusal):
    """What the deploy runs before a release goes live (roles/prefect_deploy smoke.yml)."""
    fake_saas.config(resend_domains=domains)
    env_file = tmp_path / "prefect-worker.env"
    env_file.write_text(
        f'RESEND_API_KEY="{key}"\nRESEND_FROM="{SENDER}"\nRESEND_BASE_URL={fake_saas.base_url}\n'
    )
    command = [sys.executable, str(ROOT / "flows" / "register.py"), "--check-resend"]
    done = subprocess.run(
        [*command, "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("RESEND_")},
    )
    if refusal is None:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"sender_domain": "galatek.dev", "status": "verified"}
    else:
        assert done.returncode == 2
        assert done.stderr.startswith("DEPLOY REFUSED: ")
        assert refusal in done.stderr
    assert fake_saas.state()["emails"] == []  # nothing sent
