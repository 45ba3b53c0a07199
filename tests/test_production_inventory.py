"""The production inventory, checked in seconds without a host: the vault keys it needs are
named before anything runs, site.yml parses with it, and every role accepts what it sets
(its meta/argument_specs.yml). The rehearsal (tests/e2e/test_production.py) then runs it for
real on a fresh host."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRODUCTION = ROOT / "inventories" / "production"
VAULT_KEYS = yaml.safe_load((PRODUCTION / "group_vars" / "all" / "main.yml").read_text())[
    "galatek_vault_keys"
]


def stand_in_vault() -> dict[str, str]:
    """A value for every vault key, shaped like the real ones."""
    values = {key: f"stand-in-{key}" for keys in VAULT_KEYS.values() for key in keys}
    values["vault_prefect_auth_string"] = "admin:" + "x" * 32
    values["vault_oncall_webhook_url"] = "https://hooks.slack.com/services/T0/B0/stand-in"
    values["vault_oncall_email"] = "oncall@galatek.dev"
    values["vault_letsencrypt_email"] = "ops@galatek.dev"
    values["vault_prefect_encryption_key"] = base64.urlsafe_b64encode(bytes(32)).decode()
    return values


def playbook(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_ROLES_PATH": str(ROOT / "roles")}
    return subprocess.run(
        [BIN / "ansible-playbook", "-i", PRODUCTION, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def site_roles() -> dict[str, list[str]]:
    """Each role site.yml runs, and the groups it runs on."""
    roles: dict[str, list[str]] = {}
    for play in yaml.safe_load((ROOT / "site.yml").read_text()):
        for role in play.get("roles", []):
            roles[role["role"]] = play["hosts"].split(":")
    return roles


@pytest.fixture
def vault_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault.yml"
    path.write_text(yaml.safe_dump(stand_in_vault()))
    return path


@pytest.mark.skipif(
    (PRODUCTION / "group_vars" / "all" / "vault.yml").exists(),
    reason="this checkout holds a real vault",
)
def test_a_missing_vault_key_is_named_before_any_host_is_touched():
    result = playbook("site.yml")
    assert result.returncode != 0
    for key in VAULT_KEYS["required"]:
        assert key in result.stdout, result.stdout[-3000:]
    for key in VAULT_KEYS["optional"] + VAULT_KEYS["scaled_out"]:
        assert key not in result.stdout
    assert "unreachable=0" in result.stdout
    assert "ok=0" in result.stdout


def test_site_yml_parses_with_the_production_inventory(vault_file):
    result = playbook("site.yml", "--syntax-check", "-e", f"@{vault_file}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def validate_specs(vault_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """tests/production/argument_specs.yml for every role site.yml runs."""
    specs = ROOT / "tests" / "production" / "argument_specs.yml"
    roles = json.dumps({"galatek_spec_roles": site_roles()})
    return playbook(specs, "-e", f"@{vault_file}", "-e", roles, *args)


def test_every_role_accepts_what_the_production_inventory_sets(vault_file):
    result = validate_specs(vault_file)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # Each role that runs on the one production host was validated.
    for role in site_roles():
        if role != "fake_saas":
            assert f"item={role}" in result.stdout or f"({role})" in result.stdout, role


@pytest.mark.parametrize(
    ("setting", "role"),
    [
        ("prefect_server_databse_host=db", "prefect_server"),
        ("nginx_edge_tls_mode=acme", "nginx_edge"),
    ],
)
def test_a_misspelled_or_invalid_variable_is_refused(vault_file, setting, role):
    result = validate_specs(vault_file, "-e", setting)
    assert result.returncode != 0
    assert f"failed: [prefect.galatek.dev] (item={role})" in result.stdout
    assert setting.split("=")[0] in result.stdout


def test_the_production_doc_lists_exactly_the_vault_keys():
    doc = (ROOT / "docs" / "production.md").read_text()
    section = doc.split("## Vault", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- `(vault_[a-z0-9_]+)`", section, flags=re.MULTILINE)
    wanted = [key for keys in VAULT_KEYS.values() for key in keys]
    assert sorted(listed) == sorted(wanted)
    assert len(listed) == len(set(listed))
