"""The README's first step on a machine that has never run this repo.

A bare Debian 12 container (the test image: no podman, no make, no venv module) gets a copy
of the repo and runs `make deps venv`, as a new teammate or a new CI machine would. Only
`make` is installed first: it is the one prerequisite the README names.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.sandbox import IMAGE, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.fresh]

# Below this machine's hard limits, as for every test host (TESTING-ENV: no CAP_SYS_RESOURCE).
LIMITS = ("--ulimit=nofile=8192:8192", "--ulimit=nproc=8192:8192")


def in_bare_host(script: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a shell script as root in a fresh container holding a copy of the repo at /src."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    archive = subprocess.run(
        ["tar", "-c", "--null", "-T", "-"],
        cwd=ROOT,
        input=files,
        check=True,
        capture_output=True,
    ).stdout
    command = "mkdir /src && tar -x -C /src && cd /src && " + script
    podman = ["podman", "run", "--rm", "-i", "--runtime=runc", *LIMITS, IMAGE]
    result = subprocess.run(
        [*podman, "bash", "-euo", "pipefail", "-c", command],
        input=archive,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


@pytest.fixture(scope="module")
def bare_host_run():
    return in_bare_host(
        "apt-get update -qq"
        " && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null"
        " && ! command -v podman"
        " && make deps venv"
        " && podman --version && runc --version && .venv/bin/ansible-playbook --version"
        " && echo BOOTSTRAP-OK"
        " && { make deps APT_PACKAGES='curl galatek-no-such-package' || echo rc=$?; }"
    )


def test_make_deps_venv_succeeds_from_nothing(bare_host_run):
    out = bare_host_run.stdout + bare_host_run.stderr
    assert "BOOTSTRAP-OK" in bare_host_run.stdout, out[-4000:]
    assert "installing Debian packages: podman runc debootstrap" in out


def test_a_package_that_cannot_be_installed_is_named(bare_host_run):
    out = bare_host_run.stdout + bare_host_run.stderr
    assert "rc=2" in bare_host_run.stdout, out[-4000:]
    assert "error: apt-get could not install: galatek-no-such-package" in bare_host_run.stderr
