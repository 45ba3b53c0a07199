"""One sandbox host for the signup path and the website's browser test (provisioning one
takes minutes). test_recovery.py keeps a sandbox of its own, with other door limits."""

from __future__ import annotations

import pytest

from tests.sandbox import PREFIX, Sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    box = Sandbox(tmp_path_factory.mktemp("e2e"), f"{PREFIX}e2e.galatek.test")
    box.down()
    box.up()
    yield box
    box.down()
