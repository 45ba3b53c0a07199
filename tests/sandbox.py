"""A throwaway sandbox host for the end-to-end test and the benchmark.

It is what `make up` builds (playbooks/sandbox.yml, then site.yml), on a host of its own
name with its own inventory folder, so it never touches a developer's `make up` sandbox.
The inventory reuses inventories/local/group_vars; credentials land in the throwaway
folder. HTTPS goes to the host's IP with the public name in SNI and Host, like
`curl --resolve`, and the certificate is checked against the sandbox's own CA.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
GROUPS = (
    "sandbox",
    "fake_saas",
    "prefect_database",
    "prefect_server",
    "prefect_worker",
    "nginx_edge",
)
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# The signup door's path, from the campaign list both inventories share.
CAMPAIGNS = yaml.safe_load(
    (ROOT / "inventories/production/group_vars/all/campaigns.yml").read_text()
)
DOOR = f"/hooks/{CAMPAIGNS['galatek_campaign_name']}"
# Names of throwaway hosts start with this, so two checkouts can test side by side.
PREFIX = os.environ.get("GALATEK_TEST_PREFIX", "")
# The test-host image of this checkout's recipe (what `make image` built).
IMAGE = (
    os.environ.get("GALATEK_TEST_IMAGE")
    or subprocess.run(
        [ROOT / "tests/image/build.sh", "--name"], check=True, capture_output=True, text=True
    ).stdout.strip()
)


class Sandbox:
    """One sandbox host, reached by name through its IP."""

    #: Where the on-call alerts of this host's inventory go.
    oncall = "oncall@galatek.test"

    def __init__(self, folder: Path, host: str, host_vars: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.host = host
        self.container = host
        self.inventory = folder / "inventory"
        (self.inventory / "host_vars" / host).mkdir(parents=True, exist_ok=True)
        children = {group: {"hosts": {host: None}} for group in GROUPS}
        (self.inventory / "hosts.yml").write_text(
            yaml.safe_dump({"all": {"children": children}}, sort_keys=True)
        )
        group_vars = self.inventory / "group_vars"
        if not group_vars.exists():
            group_vars.symlink_to(ROOT / "inventories" / "local" / "group_vars")
        self._write_overrides(host_vars or {})
        self._client: httpx.Client | None = None

    def _write_overrides(self, host_vars: dict[str, Any]) -> None:
        overrides = {"galatek_public_name": self.host, **host_vars}
        (self.inventory / "host_vars" / self.host / "overrides.yml").write_text(
            yaml.safe_dump(overrides, sort_keys=True)
        )

    # --- Ansible -------------------------------------------------------------------
    def playbook(self, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a playbook of the repo against this sandbox; the result keeps its output."""
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "GALATEK_TEST_IMAGE": IMAGE,
        }
        return subprocess.run(
            [BIN / "ansible-playbook", "-i", self.inventory, ROOT / playbook, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    def up(self) -> None:
        for playbook in ("playbooks/sandbox.yml", "site.yml"):
            result = self.playbook(playbook)
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

    def configure(self, host_vars: dict[str, Any]) -> None:
        """Apply other host vars (on top of the inventory's) to the running host with site.yml:
        a minute or two instead of a new host."""
        self._write_overrides(host_vars)
        result = self.playbook("site.yml")
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

    def down(self) -> None:
        if self._client is not None:
            self._client.close()
        self.playbook("playbooks/sandbox.yml", "-e", "sandbox_state=absent")

    def recorded_ids(self) -> dict[str, Any]:
        path = self.inventory / "host_vars" / self.host / "prefect_deployment.yml"
        return yaml.safe_load(path.read_text())

    # --- the host ------------------------------------------------------------------
    def exec(self, *argv: str) -> str:
        return subprocess.run(
            ["podman", "exec", self.container, *argv], check=True, capture_output=True, text=True
        ).stdout

    @property
    def ip(self) -> str:
        out = subprocess.run(
            ["podman", "inspect", self.container], check=True, capture_output=True, text=True
        ).stdout
        networks = json.loads(out)[0]["NetworkSettings"]["Networks"]
        return next(iter(networks.values()))["IPAddress"]

    @property
    def auth(self) -> tuple[str, str]:
        secret = (self.inventory / ".credentials" / "prefect-admin").read_text().split()[0]
        return ("admin", secret)

    # --- HTTP ----------------------------------------------------------------------
    def ca_pem(self) -> str:
        """The CA the edge's certificate chains to: the sandbox's own."""
        return self.exec("cat", CA_PATH)

    @property
    def fake_url(self) -> str:
        """The fake Notion/Resend: on the host, in the sandbox."""
        return f"http://{self.ip}:{FAKE_SAAS_PORT}"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            context = ssl.create_default_context(cadata=self.ca_pem())
            self._client = httpx.Client(base_url=f"https://{self.ip}", verify=context, timeout=30)
        return self._client

    def https(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to https://<host><path>, sent to the host's IP (like curl --resolve)."""
        headers = {"Host": self.host, **kwargs.pop("headers", {})}
        return self.client.request(
            method, path, headers=headers, extensions={"sni_hostname": self.host}, **kwargs
        )

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A credentialed API call; retries 429 (the edge's API limit) and 503 (Prefect's
        "busy, retry") after Retry-After, as Prefect's client does."""
        for _ in range(10):
            response = self.https(method, f"/api{path}", auth=self.auth, **kwargs)
            if response.status_code not in {429, 503}:
                break
            time.sleep(float(response.headers.get("Retry-After") or 1))
        response.raise_for_status()
        return response.json() if response.content else None

    def signup(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Origin": "https://galatek.dev"}
        if key:
            headers["Idempotency-Key"] = key
        return self.https("POST", DOOR, json=body, headers=headers)

    def signup_patiently(
        self, body: dict[str, Any], key: str | None = None, tries: int = 20
    ) -> httpx.Response:
        """A signup as docs/door.md asks a website to send it: 429 and 503 are sent again
        after ``Retry-After``, with the same Idempotency-Key."""
        for _ in range(tries):
            answer = self.signup(body, key)
            if answer.status_code not in {429, 503}:
                break
            time.sleep(float(answer.headers.get("Retry-After") or 2))
        return answer

    def count_runs(self) -> int:
        deployment_id = self.recorded_ids()["prefect_deploy_deployment_id"]
        body = {"deployments": {"id": {"any_": [deployment_id]}}}
        return self.api("POST", "/flow_runs/count", json=body)

    def wait_run(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.api("GET", f"/flow_runs/{run_id}")
            if run["state"]["type"] in TERMINAL or time.monotonic() > deadline:
                return run
            time.sleep(1)

    def held_locks(self) -> dict[str, int]:
        """The per-address locks (``signup-lock-*``) that hold a slot now."""
        limits = self.api("POST", "/v2/concurrency_limits/filter", json={"limit": 200})
        return {
            limit["name"]: limit["active_slots"]
            for limit in limits
            if limit["name"].startswith("signup-lock-") and limit["active_slots"]
        }

    def live_runs(self) -> int:
        """Signup runs that may hold a lock: Running (or about to be)."""
        deployment_id = self.recorded_ids()["prefect_deploy_deployment_id"]
        body = {
            "deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING", "CANCELLING"]}}},
        }
        return self.api("POST", "/flow_runs/count", json=body)

    def hold_in_lock(self, email: str, seconds: float) -> str:
        """A signup for ``email`` held inside its lock: the welcome is sent, and the fake
        takes ``seconds`` to answer the second send. Returns the run's id once held."""
        self.fake(
            "POST",
            "/faults",
            json={"service": "resend", "method": "POST", "path": "/emails", "skip": 1}
            | {"status": None, "delay": seconds},
        )
        answer = self.signup_patiently(sample_signup(email), key=str(uuid.uuid4()))
        answer.raise_for_status()
        deadline = time.monotonic() + 180
        while len(self.received(email)["emails"]) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(3)  # the second send is under way
        return answer.json()["flow_run_id"]

    def fake(self, method: str, path: str, **kwargs: Any) -> Any:
        """The fake Notion/Resend control API (/_fake/...) on the host."""
        response = httpx.request(method, f"{self.fake_url}/_fake{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    # --- what a contact and on-call received -----------------------------------------
    def received(self, email: str) -> dict[str, Any]:
        """The fake's pages and emails for one address, and every on-call alert."""
        state = self.fake("GET", "/state")
        return {
            "pages": [p for p in state["pages"] if p["properties"]["Email"]["email"] == email],
            "emails": [e for e in state["emails"] if e["to"] == [email]],
            "alerts": [e for e in state["emails"] if e["to"] == [self.oncall]],
            "webhooks": state["webhooks"],
        }

    def wait_sequence(self, email: str, timeout: float) -> dict[str, Any]:
        """Wait until ``email`` has its 4 emails (or the timeout); return what it received."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received(email)
            if len(got["emails"]) >= STEPS or time.monotonic() > deadline:
                return got
            time.sleep(2)

    def run_state(self, run_id: str) -> str:
        """The run's state name; tolerates a server that is restarting."""
        for _ in range(60):
            try:
                return self.api("GET", f"/flow_runs/{run_id}")["state"]["name"]
            except (httpx.HTTPError, OSError):
                time.sleep(2)
        raise TimeoutError(f"no answer about flow run {run_id}")

    def kill_worker_mid_sequence(self, email: str, timeout: float = 600) -> tuple[float, str]:
        """SIGKILL every process of prefect-worker.service while ``email``'s second email is
        being sent; return the seconds from the kill to the sequence complete, and the run."""
        # The second send takes 30 s at the fake: the run is between two sends.
        run_id = self.hold_in_lock(email, 30)
        self.exec("systemctl", "kill", "--signal=SIGKILL", "prefect-worker.service")
        killed = time.monotonic()
        self.wait_sequence(email, timeout)
        return time.monotonic() - killed, run_id


# The fake SaaS's port, as the sandbox inventory sets it for every play.
SANDBOX_VARS = yaml.safe_load((ROOT / "inventories/local/group_vars/all/main.yml").read_text())
FAKE_SAAS_PORT = SANDBOX_VARS["fake_saas_port"]
# The edge's local CA, where the nginx_edge role puts it (its one source).
EDGE_VARS = yaml.safe_load((ROOT / "roles" / "nginx_edge" / "vars" / "main.yml").read_text())
CA_PATH = EDGE_VARS["nginx_edge_ca_certificate"]
# The sandbox's on-call address (inventories/local/group_vars/all/main.yml).
ONCALL = Sandbox.oncall
STEPS = 4  # emails in a sequence


# The example signup (tests/data/signup.yml), the one copy every test sends.
EXAMPLE_SIGNUP: dict[str, Any] = yaml.safe_load((ROOT / "tests/data/signup.yml").read_text())


def sample_signup(email: str = EXAMPLE_SIGNUP["email"]) -> dict[str, Any]:
    return {**EXAMPLE_SIGNUP, "email": email}
