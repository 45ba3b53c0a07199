"""One sandbox host for every end-to-end test of the stack (provisioning one takes minutes,
and two at once load a 2-core machine enough to break the recovery's timing):
test_recovery.py raises its door limits for its own tests and puts them back after."""

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
