"""PREFECT_SERVER_ENCRYPTION_KEY: with it set, the database (and so a dump) holds no key;
after a key change the old blocks are unreadable (even to delete), and the documented way
out (delete them in the database, rerun the deploy) saves the deploy's alert blocks again."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

from fake_saas import DEFAULT_RESEND_API_KEY

from .conftest import SENDER
from .test_register import api, register, server_process

KEY_A = base64.urlsafe_b64encode(b"a" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"b" * 32).decode()


def server(home: Path, key: str):
    """A Prefect server on SQLite in ``home`` with encryption key ``key``."""
    return server_process(home, PREFECT_SERVER_ENCRYPTION_KEY=key)


def automations(env: dict[str, str], fake_url: str) -> dict[str, str]:
    alert_env = {
        **env,
        "SIGNUP_ALERT_EMAIL": "oncall@galatek.test",
        "RESEND_API_KEY": DEFAULT_RESEND_API_KEY,
        "RESEND_FROM": SENDER,
        "RESEND_BASE_URL": fake_url,
    }
    deployment = "00000000-0000-4000-8000-000000000001"
    report = register(alert_env, "--automations", "--deployment-id", deployment)
    return {item["name"]: item["action"] for item in report["items"]}


def test_the_key_is_not_in_the_database_and_a_changed_key_needs_the_blocks_saved_again(
    tmp_path, fake_saas
):
    with server(tmp_path, KEY_A) as env:
        assert automations(env, fake_saas.base_url)["signup-alert-email"] == "created"
        base = env["PREFECT_API_URL"]
        url = f"{base}/block_types/slug/custom-webhook/block_documents/name/signup-alert-email"
        status, block = api(url)
        assert status == 200
        first_id = block["id"]

    with sqlite3.connect(tmp_path / "prefect.db") as db:
        keys = db.execute("SELECT key FROM configuration WHERE key = 'ENCRYPTION_KEY'").fetchall()
        data = db.execute("SELECT data FROM block_document").fetchall()
    assert keys == []
    assert not [row for row in data if DEFAULT_RESEND_API_KEY in str(row)]

    with server(tmp_path, KEY_B) as env:
        base = env["PREFECT_API_URL"]
        url = f"{base}/block_types/slug/custom-webhook/block_documents/name/signup-alert-email"
        assert api(url)[0] == 500  # saved under KEY_A: unreadable now, even to delete
        assert api(f"{base}/block_documents/{first_id}", "DELETE")[0] == 500
        # roles/prefect_server/README.md, "Encryption key": delete them in the database.
        with sqlite3.connect(tmp_path / "prefect.db") as db:
            db.execute("DELETE FROM block_document WHERE name LIKE 'signup-alert-%'")
        assert automations(env, fake_saas.base_url)["signup-alert-email"] == "created"
        status, block = api(f"{url}?include_secrets=true")
        assert status == 200
        assert block["data"]["secrets"]["resend_api_key"] == DEFAULT_RESEND_API_KEY
        assert automations(env, fake_saas.base_url)["signup-alert-email"] == "unchanged"
