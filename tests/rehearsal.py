"""A production rehearsal: the production inventory, unchanged, on a fresh host.

What a new operator has, and nothing more, stands in for production:

* a fresh Debian 12 host named ``prefect.galatek.dev`` (a test-image container), prepared as
  docs/production.md's prerequisites say: SSH as ``deploy`` with sudo. The controller finds it
  through an SSH config (as a laptop's ``~/.ssh/config`` would), the host finds its own name
  the way DNS would tell it;
* a vault with exactly the keys ``galatek_vault_keys`` lists, encrypted with ansible-vault and
  a password file;
* Let's Encrypt played by Pebble (Debian's ``pebble``, with ``pebble-challtestsrv`` answering
  its DNS with the host's address) on this machine, its CA trusted by the host as a private
  ACME server's would be;
* Notion and Resend played by tests/fake_saas on this machine, the sender's domain verified
  in its Resend team;
* no route to PyPI: the wheelhouse (``make wheelhouse``, built within the repo's lock) copied
  to the host, as docs/production.md says for such hosts.

The only settings on top of the inventory (``overlay``) are the ones such an operator sets:
the ACME directory and its CA bundle, the two APIs' base URLs, and the wheelhouse. The
inventory is a copy, so the deploy's records land in the copy, not in the repo.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from fake_saas import DEFAULT_DATABASE_ID

from tests.sandbox import BIN, IMAGE, PREFIX, ROOT, Sandbox

WHEELHOUSE = os.environ.get("GALATEK_WHEELHOUSE", "/var/cache/galatek/wheelhouse")

PRODUCTION = ROOT / "inventories" / "production"
PRODUCTION_VARS = yaml.safe_load((PRODUCTION / "group_vars" / "all" / "main.yml").read_text())
VAULT_KEYS: dict[str, list[str]] = PRODUCTION_VARS["galatek_vault_keys"]
# The sender's domain, verified in the operator's Resend team (the deploy checks it).
SENDER_DOMAIN = (
    PRODUCTION_VARS["prefect_worker_flow_env"]["RESEND_FROM"].rsplit("@", 1)[1].rstrip(">")
)
HOST = "prefect.galatek.dev"
ONCALL = "oncall@galatek.dev"


def _random(length: int = 32) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _run(*argv: str | Path, **kwargs: Any) -> str:
    return subprocess.run(
        [str(a) for a in argv], check=True, capture_output=True, text=True, **kwargs
    ).stdout


class Rehearsal(Sandbox):
    """The production inventory on a fresh host; the same helpers as a sandbox."""

    oncall = ONCALL

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = HOST
        self.container = f"{PREFIX}rehearsal.galatek.dev"
        self.network = f"{PREFIX}galatek-rehearsal"
        self.inventory = folder / "production"
        self._client = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self.vault = {key: _random() for keys in VAULT_KEYS.values() for key in keys}
        self.vault.update(
            vault_prefect_auth_string=f"admin:{_random()}",
            vault_notion_token=f"secret_{_random()}",
            vault_notion_database_id=DEFAULT_DATABASE_ID,
            vault_resend_api_key=f"re_{_random()}",
            vault_letsencrypt_email="ops@galatek.dev",
            vault_oncall_email=ONCALL,
            vault_prefect_encryption_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        )

    # --- what stands in for the world ------------------------------------------------
    def _start(self, *argv: str | Path, env: dict[str, str] | None = None) -> None:
        log = (self.folder / f"{Path(str(argv[0])).name}-{len(self._processes)}.log").open("wb")
        self._processes.append(
            subprocess.Popen(
                [str(a) for a in argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=ROOT,
            )
        )

    def _boot_host(self) -> None:
        exists = subprocess.run(["podman", "network", "exists", self.network], check=False)
        if exists.returncode != 0:
            _run("podman", "network", "create", self.network)
        _run(
            "podman", "run", "-d", "--name", self.container, "--hostname", HOST,
            "--network", self.network, "--runtime=runc", "--systemd=always",
            "--ulimit", "nofile=8192:8192", "--ulimit", "nproc=8192:8192",
            "--label", "galatek.sandbox=1", "--volume", f"{WHEELHOUSE}:/opt/wheelhouse:ro",
            IMAGE, "/lib/systemd/systemd",
        )  # fmt: skip
        for _ in range(60):
            state = subprocess.run(
                ["podman", "exec", self.container, "systemctl", "is-system-running"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if state in {"running", "degraded"}:
                break
            time.sleep(1)
        info = json.loads(_run("podman", "network", "inspect", self.network))[0]
        self.gateway = info["subnets"][0]["gateway"]

    def _prepare_host(self) -> None:
        """docs/production.md, prerequisites: SSH as deploy with sudo. Plus, as for any
        private ACME server, its CA in the host's trust store."""
        key = self.folder / "deploy-key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rehearsal", "-f", key)
        script = f"""set -e
useradd --create-home --shell /bin/bash deploy
echo 'deploy ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/deploy && chmod 0440 /etc/sudoers.d/deploy
install -d -m 0700 -o deploy -g deploy ~deploy/.ssh
echo '{(key.with_suffix(".pub")).read_text().strip()}' >~deploy/.ssh/authorized_keys
chown deploy:deploy ~deploy/.ssh/authorized_keys && chmod 0600 ~deploy/.ssh/authorized_keys
systemctl start ssh
"""
        _run("podman", "exec", self.container, "bash", "-c", script)
        (self.folder / "ssh_config").write_text(
            f"Host {HOST}\n  HostName {self.ip}\n  User deploy\n  IdentityFile {key}\n"
            f"  IdentitiesOnly yes\n  StrictHostKeyChecking accept-new\n"
            f"  UserKnownHostsFile {self.folder / 'known_hosts'}\n"
        )

    def _start_acme(self) -> None:
        """Pebble on this machine, its DNS answering every name with the host's address."""
        cert, key = self.folder / "acme.pem", self.folder / "acme-key.pem"
        _run(
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "7", "-subj", "/CN=rehearsal ACME",
            "-addext", f"subjectAltName=IP:{self.gateway}", "-keyout", key, "-out", cert,
        )  # fmt: skip
        dns = _free_port("127.0.0.1")
        acme, management = _free_port(self.gateway), _free_port(self.gateway)
        config = {
            "pebble": {
                "listenAddress": f"{self.gateway}:{acme}",
                "managementListenAddress": f"{self.gateway}:{management}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.folder / "pebble.json").write_text(json.dumps(config))
        self._start(
            "pebble-challtestsrv", "-defaultIPv4", self.ip, "-defaultIPv6", "",
            "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-management", f"127.0.0.1:{_free_port('127.0.0.1')}",
        )  # fmt: skip
        self._start(
            "pebble", "-config", self.folder / "pebble.json", "-dnsserver", f"127.0.0.1:{dns}",
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
        )  # fmt: skip
        self.acme_directory = f"https://{self.gateway}:{acme}/dir"
        root = self._wait_get(
            f"https://{self.gateway}:{management}/roots/0",
            verify=ssl.create_default_context(cafile=cert),
        )
        # The host trusts the ACME server and the CA it issues from, like a private CA.
        for name, pem in (("rehearsal-acme", cert.read_text()), ("rehearsal-acme-root", root)):
            _run(
                "podman", "exec", "-i", self.container, "tee",
                f"/usr/local/share/ca-certificates/{name}.crt", input=pem,
            )  # fmt: skip
        _run("podman", "exec", self.container, "update-ca-certificates")
        self.root_pem = root

    def _start_fake_saas(self) -> None:
        port = _free_port(self.gateway)
        self._start(
            sys.executable, "-m", "fake_saas", "--host", self.gateway, "--port", str(port),
            "--notion-token", self.vault["vault_notion_token"],
            "--notion-database-id", self.vault["vault_notion_database_id"],
            "--resend-api-key", self.vault["vault_resend_api_key"],
            "--resend-domains", SENDER_DOMAIN,
            env={"PYTHONPATH": str(ROOT / "tests")},
        )  # fmt: skip
        self._fake_url = f"http://{self.gateway}:{port}"
        self._wait_get(f"{self._fake_url}/_fake/state")
        self.vault["vault_oncall_webhook_url"] = f"{self._fake_url}/services/T0/B0/rehearsal"

    @staticmethod
    def _wait_get(url: str, verify: ssl.SSLContext | bool = True) -> str:
        for _ in range(60):
            try:
                response = httpx.get(url, verify=verify, timeout=5)
                if response.status_code == 200:
                    return response.text
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(url)

    def _write_inventory(self) -> None:
        """A copy of the production inventory, its vault encrypted as an operator makes it."""
        shutil.copytree(PRODUCTION, self.inventory, symlinks=False)
        vault = self.inventory / "group_vars" / "all" / "vault.yml"
        vault.write_text(yaml.safe_dump(self.vault, sort_keys=True))
        self.vault_password = self.folder / "vault-password"
        self.vault_password.write_text(_random() + "\n")
        _run(BIN / "ansible-vault", "encrypt", "--vault-password-file", self.vault_password, vault)
        self.overlay = self.folder / "overlay.yml"
        self.overlay.write_text(
            yaml.safe_dump(
                {
                    "nginx_edge_letsencrypt_directory": self.acme_directory,
                    "nginx_edge_letsencrypt_ca_bundle": "/etc/ssl/certs/ca-certificates.crt",
                    "galatek_notion_base_url": self._fake_url,
                    "galatek_resend_base_url": self._fake_url,
                    "prefect_server_wheelhouse": "/opt/wheelhouse",
                    "prefect_worker_wheelhouse": "/opt/wheelhouse",
                }
            )
        )

    # --- Sandbox's interface -----------------------------------------------------------
    def playbook(self, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A playbook as docs/production.md runs it: -i inventories/production, the vault."""
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "ANSIBLE_SSH_ARGS": f"-F {self.folder / 'ssh_config'} "
            "-o ControlMaster=auto -o ControlPersist=60s",
        }
        return subprocess.run(
            [
                BIN / "ansible-playbook", "-i", self.inventory, ROOT / playbook,
                "--vault-password-file", self.vault_password, "-e", f"@{self.overlay}", *args,
            ],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    def up(self) -> None:
        self._boot_host()
        self._prepare_host()
        self._start_acme()
        self._start_fake_saas()
        self._write_inventory()
        self.site = self.playbook("site.yml")

    def down(self) -> None:
        if self._client is not None:
            self._client.close()
        for process in self._processes:
            process.terminate()
            process.wait(timeout=10)
        subprocess.run(["podman", "rm", "-f", "-t", "0", self.container], check=False)
        subprocess.run(["podman", "network", "rm", "-f", self.network], check=False)

    def recorded_ids(self) -> dict[str, Any]:
        path = self.inventory / "host_vars" / HOST / "prefect_deployment.yml"
        return yaml.safe_load(path.read_text())

    def ca_pem(self) -> str:
        return self.root_pem

    @property
    def fake_url(self) -> str:
        return self._fake_url

    @property
    def auth(self) -> tuple[str, str]:
        user, password = self.vault["vault_prefect_auth_string"].split(":", 1)
        return (user, password)
