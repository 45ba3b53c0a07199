"""Benchmark of the whole stack on a fresh sandbox host; prints figures, asserts nothing.

    make bench            # or: .venv/bin/python -m tests.bench.bench [--burst 300]

Figures: cold provision of a fresh host; no-op reruns of site.yml and deploy.yml; door vs
direct-API latency (p50/p99 and their ratio, interleaved in one run); 16 and 64 door POSTs
released at one instant (how many got 503); signup -> COMPLETED (p50/p95); the time from a
SIGKILL of the worker mid-sequence to the sequence complete; a burst of signups with the fake
enforcing Notion's 3 requests/s: completed, lost, duplicate emails (from the fake's state),
and the Notion rate achieved as a share of that ceiling. The burst stops after
--burst-timeout (30 min) and then says how many runs had not ended.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.sandbox import PREFIX, TERMINAL, Sandbox, sample_signup

NOTION_CEILING = 3.0  # requests per second, Notion's documented average limit
# Door limits high enough that the benchmark measures the stack, not the rate limiter.
BENCH_HOST_VARS = {
    "nginx_edge_door_rate": "6000r/m",
    "nginx_edge_door_burst": 1000,
    "nginx_edge_door_global_rate": "6000r/m",
    "nginx_edge_door_global_burst": 1000,
    # 64 concurrent POSTs come from this one address (websites' visitors have their own).
    "nginx_edge_conn_per_address": 128,
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


RETRIED: Counter[str] = Counter()
TRIES = 30


def patient(name: str, send: Any) -> tuple[float, Any]:
    """Send like a well-behaved client: retry 429 and 503 (counted); time the answer that
    counts, not the waits."""
    for _ in range(TRIES):
        start = time.perf_counter()
        answer = send()
        elapsed = time.perf_counter() - start
        if answer.status_code not in {429, 503}:
            answer.raise_for_status()
            return elapsed, answer
        RETRIED[f"{name} {answer.status_code}"] += 1
        time.sleep(float(answer.headers.get("Retry-After", "1")))
    raise RuntimeError(f"{name}: still {answer.status_code} after {TRIES} tries")


def ok(result: Any) -> None:
    assert result.returncode == 0, result.stdout[-3000:]


def noop_rerun(box: Sandbox, playbook: str, *args: str) -> str:
    """Wall time of a rerun that must change nothing, with its task count."""
    start = time.perf_counter()
    result = box.playbook(playbook, *args)
    elapsed = time.perf_counter() - start
    ok(result)
    recap = re.search(r"ok=(\d+)\s+changed=(\d+)", result.stdout)
    assert recap, result.stdout[-2000:]
    tasks, changed = recap.groups()
    return f"{elapsed:.0f} s ({tasks} tasks, changed={changed})"


def provision(box: Sandbox) -> dict[str, Any]:
    box.down()
    times: dict[str, Any] = {"cold": timed(box.up)}
    # The inventory reaches the host over SSH, as production does; the podman connection
    # (what the sandbox used before) is measured beside it, set in the host's own vars so
    # that tasks delegated to the controller keep their local connection.
    podman = box.inventory / "host_vars" / box.host / "podman.yml"
    for playbook in ("site.yml", "playbooks/deploy.yml"):
        ssh = noop_rerun(box, playbook)
        podman.write_text(
            f"ansible_connection: containers.podman.podman\nansible_host: {box.host}\n"
        )
        try:
            times[playbook] = (ssh, noop_rerun(box, playbook))
        finally:
            podman.unlink()
    return times


def latency(box: Sandbox, rounds: int) -> dict[str, list[float]]:
    """Door vs direct API, interleaved, with the work pool paused so no run executes."""
    pool = box.api("GET", f"/deployments/{box.recorded_ids()['prefect_deploy_deployment_id']}")[
        "work_pool_name"
    ]
    box.api("PATCH", f"/work_pools/{pool}", json={"is_paused": True})
    deployment_id = box.recorded_ids()["prefect_deploy_deployment_id"]
    door, direct, runs = [], [], []
    try:
        for i in range(rounds):
            body = sample_signup(f"latency-{i}@example.com")
            elapsed, answer = patient("door", lambda body=body: box.signup(body))
            door.append(elapsed)
            runs.append(answer.json()["flow_run_id"])
            elapsed, answer = patient(
                "api",
                lambda body=body: box.https(
                    "POST",
                    f"/api/deployments/{deployment_id}/create_flow_run",
                    auth=box.auth,
                    json={"parameters": body, "enforce_parameter_schema": True},
                ),
            )
            direct.append(elapsed)
            runs.append(answer.json()["id"])
    finally:
        for run_id in runs:
            box.api("DELETE", f"/flow_runs/{run_id}")
        box.api("PATCH", f"/work_pools/{pool}", json={"is_paused": False})
    return {"door": door, "direct": direct}


def end_to_end(box: Sandbox, count: int) -> list[float]:
    """Signups one after the other: from the POST to the run's COMPLETED state (its own
    timestamp: the host shares this machine's clock, and the wait's polling adds nothing)."""
    durations = []
    for _ in range(count):
        start = time.time()
        body = sample_signup(f"e2e-{uuid.uuid4().hex[:8]}@example.com")
        _, answer = patient("door", lambda body=body: box.signup(body))
        run = box.wait_run(answer.json()["flow_run_id"])
        assert run["state"]["type"] == "COMPLETED", run["state"]
        durations.append(datetime.fromisoformat(run["state"]["timestamp"]).timestamp() - start)
        time.sleep(1)  # one signup at a time, none waiting on the last one's limits
    return durations


def concurrent_posts(box: Sandbox, count: int) -> Counter[int]:
    """``count`` door POSTs released at the same instant, each sent once: their statuses.
    The work pool is paused and the runs deleted after, so nothing executes."""
    pool = box.api("GET", f"/deployments/{box.recorded_ids()['prefect_deploy_deployment_id']}")[
        "work_pool_name"
    ]
    box.api("PATCH", f"/work_pools/{pool}", json={"is_paused": True})
    start = threading.Barrier(count)
    answers: list[Any] = []

    def send(n: int) -> Any:
        body = sample_signup(f"concurrent-{count}-{n}-{uuid.uuid4().hex[:6]}@example.com")
        start.wait()
        return box.signup(body)

    try:
        with ThreadPoolExecutor(max_workers=count) as threads:
            answers = list(threads.map(send, range(count)))
    finally:
        for answer in answers:
            if answer.status_code == 202:
                box.api("DELETE", f"/flow_runs/{answer.json()['flow_run_id']}")
        box.api("PATCH", f"/work_pools/{pool}", json={"is_paused": False})
    return Counter(a.status_code for a in answers)


def run_states(box: Sandbox, run_ids: list[str]) -> dict[str, str]:
    """State types of many runs, in pages of 200 (a few API calls, not one per run)."""
    states = {}
    for first in range(0, len(run_ids), 200):
        page = run_ids[first : first + 200]
        body = {"flow_runs": {"id": {"any_": page}}, "limit": len(page)}
        for run in box.api("POST", "/flow_runs/filter", json=body):
            states[run["id"]] = run["state"]["type"]
    return states


def burst(box: Sandbox, count: int, timeout: float) -> dict[str, Any]:
    """``count`` signups at once through the door, with the fake enforcing Notion's rate;
    waits for every run to end, or stops after ``timeout`` seconds with what finished."""
    box.fake("POST", "/reset")
    box.fake("POST", "/config", json={"notion_rate": NOTION_CEILING})
    emails = [f"burst-{i}@example.com" for i in range(count)]
    start = time.perf_counter()
    deadline = time.monotonic() + timeout

    def submit(email: str) -> str | None:
        try:
            _, answer = patient("burst", lambda: box.signup(sample_signup(email)))
        except (RuntimeError, httpx.HTTPError) as exc:
            print(f"burst: {email} not accepted: {exc}")
            return None
        return answer.json()["flow_run_id"]

    with ThreadPoolExecutor(max_workers=8) as threads:
        accepted = [run for run in threads.map(submit, emails) if run]
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = run_states(box, accepted)
        if all(states.get(run) in TERMINAL for run in accepted):
            break
        time.sleep(10)
    elapsed = time.perf_counter() - start
    unfinished = Counter(states.get(run, "UNKNOWN") for run in accepted)
    for terminal in TERMINAL:
        unfinished.pop(terminal, None)
    done = Counter(state for state in states.values() if state in TERMINAL)
    state = box.fake("GET", "/state")
    sends = Counter((tuple(e["to"]), e["subject"]) for e in state["emails"])
    notion = [r for r in state["requests"] if r["service"] == "notion"]
    served = [r for r in notion if r["status"] < 300]
    stamps = sorted(datetime.fromisoformat(r["at"]).timestamp() for r in served if "at" in r)
    span = (stamps[-1] - stamps[0]) if len(stamps) > 1 else elapsed
    return {
        "submitted": count,
        "accepted": len(accepted),
        "completed": done["COMPLETED"],
        # not accepted by the door, or ended in another state than Completed
        "lost": count - len(accepted) + sum(done.values()) - done["COMPLETED"],
        "unfinished": dict(unfinished),
        "duplicate_emails": sum(n - 1 for n in sends.values() if n > 1),
        "emails": len(state["emails"]),
        "notion_requests": len(served),
        "notion_429": sum(1 for r in notion if r["status"] == 429),
        "notion_rate": len(served) / span if span else 0.0,
        "elapsed": elapsed,
        "timeout": timeout,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-rounds", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10, help="signups timed to COMPLETED")
    parser.add_argument("--kill", type=int, default=1, help="worker kills timed to recovery")
    parser.add_argument(
        "--concurrent", type=int, nargs="*", default=[16, 64], help="door POSTs at one instant"
    )
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--burst-timeout", type=float, default=1800, help="seconds")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    box = Sandbox(folder, f"{PREFIX}bench.galatek.test", BENCH_HOST_VARS)
    try:
        times = provision(box)
        print(f"cold provision (sandbox.yml + site.yml): {times['cold']:.0f} s")
        for playbook in ("site.yml", "playbooks/deploy.yml"):
            ssh, podman = times[playbook]
            print(f"no-op rerun of {playbook}: over SSH {ssh}; over the podman connection {podman}")

        if args.latency_rounds:
            report_latency(latency(box, args.latency_rounds), args.latency_rounds)
        for count in args.concurrent:
            statuses = concurrent_posts(box, count)
            print(
                f"{count} concurrent door POSTs: {statuses[503]} x 503 "
                f"(all answers: {dict(sorted(statuses.items()))})"
            )
        if args.runs:
            report_runs(end_to_end(box, args.runs), args.runs)
        for n in range(args.kill):
            seconds, _ = box.kill_worker_mid_sequence(f"bench-kill-{n}@example.com")
            print(f"worker kill (SIGKILL) mid-sequence -> sequence complete: {seconds:.0f} s")
        if args.burst:
            report_burst(burst(box, args.burst, args.burst_timeout))
        print(f"answers retried by the client (429/503): {dict(RETRIED) or 'none'}")
    finally:
        box.down()


def report_latency(lat: dict[str, list[float]], rounds: int) -> None:
    door50, door99 = pct(lat["door"], 50) * 1000, pct(lat["door"], 99) * 1000
    api50, api99 = pct(lat["direct"], 50) * 1000, pct(lat["direct"], 99) * 1000
    print(
        f"latency over {rounds} interleaved pairs: door p50 {door50:.1f} ms "
        f"p99 {door99:.1f} ms; direct API p50 {api50:.1f} ms p99 {api99:.1f} ms; "
        f"ratio p50 {door50 / api50:.2f} p99 {door99 / api99:.2f}"
    )


def report_runs(e2e: list[float], runs: int) -> None:
    print(
        f"signup -> COMPLETED over {runs} runs: p50 {statistics.median(e2e):.1f} s "
        f"p95 {pct(e2e, 95):.1f} s"
    )


def report_burst(result: dict[str, Any]) -> None:
    print(
        f"burst of {result['submitted']} signups: accepted {result['accepted']}, "
        f"completed {result['completed']}, lost {result['lost']}, "
        f"duplicate emails {result['duplicate_emails']} ({result['emails']} emails), "
        f"in {result['elapsed']:.0f} s; Notion {result['notion_requests']} requests "
        f"(and {result['notion_429']} x 429) at {result['notion_rate']:.2f}/s = "
        f"{result['notion_rate'] / NOTION_CEILING:.0%} of the {NOTION_CEILING:.0f}/s ceiling"
    )
    if result["unfinished"]:
        print(
            f"burst stopped after {result['timeout'] / 60:.0f} min with runs unfinished "
            f"{result['unfinished']}: the figures above are those of the runs that ended"
        )


if __name__ == "__main__":
    main()
