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
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
GROUPS = ("sandbox", "fake_saas", "prefect_server", "prefect_worker", "nginx_edge")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
DOOR = "/hooks/christmas-signup"
# Names of throwaway hosts start with this, so two checkouts can test side by side.
PREFIX = os.environ.get("GALATEK_TEST_PREFIX", "")


class Sandbox:
    """One sandbox host, reached by name through its IP."""

    def __init__(self, folder: Path, host: str, host_vars: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.host = host
        self.inventory = folder / "inventory"
        (self.inventory / "host_vars" / host).mkdir(parents=True, exist_ok=True)
        children = {group: {"hosts": {host: None}} for group in GROUPS}
        (self.inventory / "hosts.yml").write_text(
            yaml.safe_dump({"all": {"children": children}}, sort_keys=True)
        )
        group_vars = self.inventory / "group_vars"
        if not group_vars.exists():
            group_vars.symlink_to(ROOT / "inventories" / "local" / "group_vars")
        overrides = {"galatek_public_name": host, **(host_vars or {})}
        (self.inventory / "host_vars" / host / "overrides.yml").write_text(
            yaml.safe_dump(overrides, sort_keys=True)
        )
        self._client: httpx.Client | None = None

    # --- Ansible -------------------------------------------------------------------
    def playbook(self, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a playbook of the repo against this sandbox; the result keeps its output."""
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
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
            ["podman", "exec", self.host, *argv], check=True, capture_output=True, text=True
        ).stdout

    @property
    def ip(self) -> str:
        out = subprocess.run(
            ["podman", "inspect", self.host], check=True, capture_output=True, text=True
        ).stdout
        networks = json.loads(out)[0]["NetworkSettings"]["Networks"]
        return next(iter(networks.values()))["IPAddress"]

    @property
    def auth(self) -> tuple[str, str]:
        secret = (self.inventory / ".credentials" / "prefect-admin").read_text().split()[0]
        return ("admin", secret)

    # --- HTTP ----------------------------------------------------------------------
    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            context = ssl.create_default_context(cadata=self.exec("cat", CA_PATH))
            self._client = httpx.Client(base_url=f"https://{self.ip}", verify=context, timeout=30)
        return self._client

    def https(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to https://<host><path>, sent to the host's IP (like curl --resolve)."""
        headers = {"Host": self.host, **kwargs.pop("headers", {})}
        return self.client.request(
            method, path, headers=headers, extensions={"sni_hostname": self.host}, **kwargs
        )

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A credentialed API call; retries 503 (Prefect's "busy, retry") as its client does."""
        for _ in range(5):
            response = self.https(method, f"/api{path}", auth=self.auth, **kwargs)
            if response.status_code != 503:
                break
            time.sleep(1)
        response.raise_for_status()
        return response.json() if response.content else None

    def signup(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Origin": "https://galatek.dev"}
        if key:
            headers["Idempotency-Key"] = key
        return self.https("POST", DOOR, json=body, headers=headers)

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

    def fake(self, method: str, path: str, **kwargs: Any) -> Any:
        """The fake Notion/Resend control API (/_fake/...) on the host."""
        response = httpx.request(method, f"http://{self.ip}:8099/_fake{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()


# The edge's local CA, where the nginx_edge role puts it (its one source).
EDGE_VARS = yaml.safe_load((ROOT / "roles" / "nginx_edge" / "vars" / "main.yml").read_text())
CA_PATH = EDGE_VARS["nginx_edge_ca_certificate"]


def sample_signup(email: str = "ada@example.com") -> dict[str, Any]:
    return {
        "email": email,
        "first_name": "Ada",
        "business_name": "Lovelace Analytics",
        "assessment_score": 62,
        "red_systems": 2,
        "orange_systems": 3,
        "yellow_systems": 1,
        "green_systems": 4,
        "gps_score": 7,
        "money_score": 5,
        "weakest_system_1": "Lead follow-up",
        "weakest_system_2": "Invoicing",
        "revenue_leak_total": 12500,
    }
