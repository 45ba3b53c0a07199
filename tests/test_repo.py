"""Promises the repo makes to its users: safe defaults, pinned tools, clear refusals."""

import json
import os
import shutil
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion

ROOT = Path(__file__).resolve().parents[1]
# The venv running pytest (`make VENV=...` may point elsewhere than .venv).
VENV_BIN = Path(sys.executable).parent


def test_ansible_cfg_defaults_to_the_local_sandbox():
    cfg = ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    assert cfg["defaults"]["inventory"] == "inventories/local"


def test_production_host_is_in_every_function_group():
    hosts = yaml.safe_load((ROOT / "inventories/production/hosts.yml").read_text())
    groups = hosts["all"]["children"]
    for group in ("prefect_database", "prefect_server", "prefect_worker", "nginx_edge"):
        assert "prefect.galatek.dev" in groups[group]["hosts"], group


def test_requirements_yml_matches_the_collections_the_pinned_ansible_bundles():
    listing = subprocess.run(
        [VENV_BIN / "ansible-galaxy", "collection", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    bundled = {}
    for collections in json.loads(listing).values():
        for name, info in collections.items():
            bundled.setdefault(name, info["version"])
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    for entry in wanted:
        version = LooseVersion(bundled[entry["name"]])
        low, high = (bound.lstrip("<>=") for bound in entry["version"].split(","))
        assert LooseVersion(low) <= version < LooseVersion(high), (
            f"{entry['name']} {version} does not satisfy {entry['version']}"
        )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make up" in readme
    assert "make test" in readme
    assert "exec make test" in (ROOT / ".ci/run").read_text()


@pytest.mark.skipif(shutil.which("runuser") is None, reason="needs runuser")
def test_make_up_without_root_refuses_in_one_line(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", "make", "--no-print-directory", "-C", ROOT, "up"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[0] == (
        "error: run make as root (it installs Debian packages and runs podman)"
    )


def test_the_controller_pins_the_prefect_release_the_hosts_run():
    """One source for the release (roles/prefect_install/defaults/main.yml); the controller's
    pins must name the same one, since the wheelhouse and the flow tests use them."""
    defaults = ROOT / "roles/prefect_install/defaults/main.yml"
    settings = yaml.safe_load(defaults.read_text())
    for pins in ("requirements.in", "requirements.txt"):
        for package, setting in (
            ("prefect", "prefect_install_release"),
            ("prefect-redis", "prefect_install_redis_release"),
        ):
            assert f"{package}=={settings[setting]}\n" in (ROOT / pins).read_text(), (
                f"{pins} must pin {package}=={settings[setting]} ({setting} in {defaults})"
            )


def test_the_door_and_the_flow_refuse_the_same_too_long_address():
    from christmas_signup.inputs import MAX_EMAIL_LENGTH  # noqa: PLC0415

    door = (ROOT / "roles/nginx_edge/files/door.js").read_text()
    assert f"var EMAIL_MAX_LENGTH = {MAX_EMAIL_LENGTH};" in door
