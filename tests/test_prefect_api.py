"""galatek.prefect.api, the one way the roles and playbooks call Prefect: it waits out 429
and 503 as the server asks (Retry-After) and gives up on everything else at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The ansible of the interpreter running pytest (the repo's venv).
BIN = Path(sys.executable).parent


class Script:
    """Answers to give, in order; the last one repeats. Records what came in."""

    def __init__(self, *answers: tuple[int, dict[str, str], object]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, str | None]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            self.requests_record(body)
            status, headers, payload = (
                script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def requests_record(self, body: str | None) -> None:
            script.requests.append((self.command, self.headers.get("Authorization"), body))

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api/things/", script
    httpd.shutdown()


def call(**args: object) -> dict:
    """Run the module once on this machine, as a task would; its result as a dict."""
    env = {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    adhoc = ["localhost", "-i", "localhost,", "-c", "local", "-m", "galatek.prefect.api"]
    python = "ansible_python_interpreter=/usr/bin/python3"
    out = subprocess.run(
        [BIN / "ansible", *adhoc, "-e", python, "-a", json.dumps(args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return json.loads(out)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_503_and_429_are_retried_after_what_the_server_asks(server):
    url, script = server
    script.answers = [
        (503, {"Retry-After": "2"}, {"detail": "busy"}),
        (429, {"retry-after": "1"}, {"detail": "slow down"}),
        (201, {}, {"id": "run-1"}),
    ]
    result = call(
        url=url, method="POST", body={"name": "x"}, auth_string="admin:s3cret", status_code=[201]
    )
    assert not result.get("failed"), result
    assert result["json"] == {"id": "run-1"}
    assert result["retries"] == ["503", "429"]
    assert result["elapsed"] >= 3  # waited 2 s, then 1 s, as asked
    assert [r[2] for r in script.requests] == ['{"name": "x"}'] * 3
    assert all(r[1] and r[1].startswith("Basic ") for r in script.requests)


def test_without_retry_after_the_wait_grows_and_stops_at_the_budget(server):
    url, script = server
    script.answers = [(503, {}, {"detail": "busy"})]
    result = call(url=url, retry_for=4)
    assert result["failed"]
    # back-off 1, 2 s (+-20 %) fits the 4 s budget; the next (4 s) would not.
    assert result["retries"] == ["503", "503"]
    assert "answered 503 after 2 retries" in result["msg"]


def test_other_errors_fail_at_once_with_the_servers_message(server):
    url, script = server
    script.answers = [(422, {}, {"detail": "name is required"})]
    result = call(url=url, method="POST", body={}, status_code=[201])
    assert result["failed"]
    assert result["retries"] == []
    assert "answered 422" in result["msg"]
    assert "name is required" in result["msg"]
    assert len(script.requests) == 1


def test_a_server_that_is_starting_is_waited_for():
    result = call(url="http://127.0.0.1:9/api/ready", retry_for=2)
    assert result["failed"]
    assert result["status"] == -1
    assert result["retries"] and all("ConnectionRefused" in r for r in result["retries"])
