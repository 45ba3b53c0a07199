"""A 202 from the door is a promise: killed workers, outages, restarts and races on a real
sandbox host end with exactly one contact page and four emails, or with one alert.

The shared sandbox host (tests/e2e/conftest.py), with higher door limits while this
module runs (about 20 minutes: the recovery waits out real heartbeat, back-off and outage
times, at the deploy's default settings).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from christmas_signup.resilience import signup_lock_name

from tests.sandbox import ONCALL, STEPS, Sandbox, sample_signup

pytestmark = pytest.mark.e2e

# Door limits high enough that these tests measure recovery, not the door's rate limiter.
HOST_VARS = {
    "nginx_edge_door_rate": "600r/m",
    "nginx_edge_door_burst": 100,
    "nginx_edge_door_global_rate": "600r/m",
    "nginx_edge_door_global_burst": 100,
}
WORKER_ROLE = """\
- name: Apply the worker role (a settings change restarts the worker through its handler)
  hosts: prefect_worker
  roles:
    - role: prefect_worker
"""


@pytest.fixture(scope="module")
def sandbox(sandbox):
    """The shared sandbox host (conftest.py) with these door limits while this module runs."""
    sandbox.configure(HOST_VARS)
    yield sandbox
    sandbox.configure({})


@pytest.fixture
def fake(sandbox):
    sandbox.fake("POST", "/reset")
    return sandbox


def one_of_each(got: dict) -> None:
    """One page, and one email per step (the keys say which step)."""
    assert len(got["pages"]) == 1, got["pages"]
    steps = Counter(e["idempotency_key"].split("/")[0] for e in got["emails"])
    assert steps == Counter({"welcome": 1, "day-2-fixes": 1, "day-5-story": 1, "day-10-offer": 1})


#: Routine operations on the single host, in the order the drill runs them while one signup
#: is held inside its lock (the worker's restart has its own test below).
OPERATIONS = (
    ("reload", "nginx"),
    ("restart", "nginx"),
    ("restart", "postgresql"),
    ("restart", "prefect-server"),
)


def same_lock(email: str, prefix: str) -> str:
    """Another address whose signups take the same per-address lock as ``email``'s."""
    lock = signup_lock_name(email)
    return next(
        address
        for n in range(1000)
        if signup_lock_name(address := f"{prefix}{n}@example.com") == lock
    )


def locks_left(box: Sandbox, timeout: float = 150) -> dict[str, int]:
    """The locks still held once no signup run is live (a dead run's lease runs out
    within 60 s, and the server's repossessor then frees its slot)."""
    deadline = time.monotonic() + timeout
    while True:
        held = box.held_locks() if box.live_runs() == 0 else {"(a run is live)": 1}
        if not held or time.monotonic() > deadline:
            return held
        time.sleep(3)


def wait_active(box: Sandbox, unit: str) -> None:
    for _ in range(60):
        if box.exec("systemctl", "is-active", unit).strip() == "active":
            return
        time.sleep(1)
    raise TimeoutError(unit)


def wait_state(box: Sandbox, run_id: str, names: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (state := box.run_state(run_id)) not in names and time.monotonic() < deadline:
        time.sleep(3)
    return state


def test_a_killed_worker_loses_no_signup(fake):
    seconds, run_id = fake.kill_worker_mid_sequence("killed@example.com", timeout=300)
    got = fake.received("killed@example.com")
    print(f"worker kill -> sequence complete: {seconds:.0f} s")
    one_of_each(got)
    assert seconds <= 300
    assert wait_state(fake, run_id, {"Completed"}, 60) == "Completed"
    assert got["alerts"] == []


def test_a_notion_outage_of_two_minutes_is_waited_out_without_an_alert(fake):
    fake.fake("POST", "/faults", json={"service": "notion", "status": 503, "seconds": 120})
    answer = fake.signup_patiently(sample_signup("outage@example.com"), key=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    got = fake.wait_sequence("outage@example.com", timeout=480)
    one_of_each(got)
    run_id = answer.json()["flow_run_id"]
    assert wait_state(fake, run_id, {"Completed"}, 60) == "Completed"
    assert got["alerts"] == [] and got["webhooks"] == []


def test_a_server_restart_with_ten_runs_queued_loses_and_repeats_nothing(fake):
    addresses = [f"queued{n}@example.com" for n in range(10)]
    runs = []
    for address in addresses:
        answer = fake.signup_patiently(sample_signup(address), key=str(uuid.uuid4()))
        assert answer.status_code == 202, answer.text
        runs.append(answer.json()["flow_run_id"])
    fake.exec("systemctl", "restart", "prefect-server")
    for run_id in runs:
        assert wait_state(fake, run_id, {"Completed"}, 480) == "Completed"
    for address in addresses:
        one_of_each(fake.received(address))


def test_two_identical_signups_at_the_same_instant_make_one_contact(fake):
    answers = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        answers.append(fake.signup_patiently(sample_signup("twice@example.com")))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [202, 202]
    run_ids = {a.json()["flow_run_id"] for a in answers}
    assert len(run_ids) == 2  # no Idempotency-Key: two runs, one contact
    for run_id in run_ids:
        assert wait_state(fake, run_id, {"Completed"}, 300) == "Completed"
    one_of_each(fake.received("twice@example.com"))


def test_a_permanent_failure_alerts_once_and_is_not_retried(fake):
    # Resend refuses the sender (403) on the first send of this signup.
    fake.fake("POST", "/faults", json={"service": "resend", "method": "POST", "status": 403})
    answer = fake.signup_patiently(sample_signup("refused@example.com"), key=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["flow_run_id"]
    assert wait_state(fake, run_id, {"Abandoned"}, 240) == "Abandoned"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = fake.received("refused@example.com")
        if got["alerts"] and got["webhooks"]:
            break
        time.sleep(2)
    time.sleep(90)  # longer than a recovery interval: a retry or a second alert would show
    got = fake.received("refused@example.com")
    [alert] = got["alerts"]
    [hook] = got["webhooks"]
    assert "refused@example.com" in alert["subject"]
    assert "refused@example.com" in hook["body"]["text"]
    assert alert["to"] == [ONCALL]
    assert got["emails"] == []
    sends = [
        r
        for r in fake.fake("GET", "/state")["requests"]
        if r["path"] == "/emails" and r["status"] == 403
    ]
    assert len(sends) == 1  # not retried
    assert fake.run_state(run_id) == "Abandoned"


def test_a_role_triggered_worker_restart_during_a_run_still_sends_everything(fake, tmp_path):
    playbook = tmp_path / "worker.yml"
    playbook.write_text(WORKER_ROLE)
    fake.fake(
        "POST",
        "/faults",
        json={"service": "resend", "method": "POST", "skip": 1, "status": None, "delay": 150},
    )
    answer = fake.signup_patiently(sample_signup("restarted@example.com"), key=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 120
    while not fake.received("restarted@example.com")["emails"] and time.monotonic() < deadline:
        time.sleep(1)
    before = fake.exec("systemctl", "show", "-P", "InvocationID", "prefect-worker").strip()
    # A settings change, as a secret rotation or an upgrade would make.
    result = fake.playbook(
        str(playbook), "-e", '{"prefect_worker_extra_env": {"PREFECT_LOGGING_LEVEL": "INFO"}}'
    )
    assert result.returncode == 0, result.stdout[-3000:]
    after = fake.exec("systemctl", "show", "-P", "InvocationID", "prefect-worker").strip()
    assert before != after  # the role restarted the worker
    got = fake.wait_sequence("restarted@example.com", timeout=480)
    one_of_each(got)
    assert len(got["emails"]) == STEPS
    assert locks_left(fake) == {}
    result = fake.playbook(str(playbook))  # back to the inventory's settings
    assert result.returncode == 0, result.stdout[-3000:]


def test_routine_restarts_mid_signup_leave_no_lock_held(fake):
    email = "drill@example.com"
    run_id = fake.hold_in_lock(email, 90)  # inside its lock, the second send takes 90 s
    for action, unit in OPERATIONS:
        fake.exec("systemctl", action, unit)
        wait_active(fake, unit)
    fake.run_state(run_id)  # the API answers again
    started = time.monotonic()
    assert wait_state(fake, run_id, {"Completed"}, 420) == "Completed"
    print(f"drill: last restart -> held signup Completed: {time.monotonic() - started:.0f} s")
    one_of_each(fake.received(email))
    assert locks_left(fake) == {}

    second = same_lock(email, "drill-second")
    started = time.monotonic()
    answer = fake.signup_patiently(sample_signup(second), key=str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    assert wait_state(fake, answer.json()["flow_run_id"], {"Completed"}, 120) == "Completed"
    print(f"drill: second signup on the same lock Completed in {time.monotonic() - started:.0f} s")
    one_of_each(fake.received(second))


def test_postgresql_restarted_under_door_traffic_loses_no_accepted_signup(fake):
    answers: list[tuple[str, httpx.Response | Exception]] = []
    stop = threading.Event()

    def traffic() -> None:
        for n in range(200):
            if stop.is_set():
                return
            address = f"steady{n}@example.com"
            try:
                answers.append((address, fake.signup(sample_signup(address))))
            except httpx.HTTPError as exc:  # a hang or a reset would show here
                answers.append((address, exc))
            time.sleep(0.5)

    sender = threading.Thread(target=traffic)
    sender.start()
    time.sleep(5)
    fake.exec("systemctl", "restart", "postgresql")
    wait_active(fake, "postgresql")
    time.sleep(10)
    stop.set()
    sender.join()
    accepted = {
        a: r.json()["flow_run_id"] for a, r in answers if getattr(r, "status_code", 0) == 202
    }
    refused = [r for _, r in answers if getattr(r, "status_code", 0) != 202]
    print(f"postgresql restart under traffic: {len(accepted)} x 202, {len(refused)} refused")
    assert all(isinstance(r, httpx.Response) and r.status_code == 503 for r in refused), refused
    assert all(r.headers.get("Retry-After") for r in refused)
    for address, run_id in accepted.items():
        assert wait_state(fake, run_id, {"Completed"}, 420) == "Completed", address
        one_of_each(fake.received(address))
    assert locks_left(fake) == {}
