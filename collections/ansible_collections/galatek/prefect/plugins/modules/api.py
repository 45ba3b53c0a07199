"""One call to the Prefect API, retried on 429/502/503 like Prefect's own client."""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

DOCUMENTATION = r"""
module: api
short_description: Call the Prefect API, retrying 429, 502 and 503 as Prefect's client does
description:
  - Sends one HTTP request and returns its JSON answer.
  - A 429, 502 or 503 answer is retried after the seconds its C(Retry-After) header asks for
    (a number or an HTTP date), else after an exponential back-off (1, 2, 4, then 8 s)
    with +-20 % jitter, as long as the wait ends within O(retry_for) seconds of the first try.
  - A refused connection (a server that is starting) is retried the same way; a request that
    may have reached the server (reset, timeout) is retried only when O(method) is GET.
  - Fails when the final status is not in O(status_code), with the server's message.
  - Never reports a change; tasks say what changed with C(changed_when).
version_added: 1.0.0
author: Galatek
options:
  url:
    description: The URL to call.
    type: str
    required: true
  method:
    description: HTTP method.
    type: str
    default: GET
  body:
    description: Sent as JSON when given.
    type: raw
  headers:
    description: More request headers.
    type: dict
    default: {}
  auth_string:
    description: Basic auth credential C(user:password); empty sends none.
    type: str
    default: ""
  status_code:
    description: Statuses that count as success.
    type: list
    elements: int
    default: [200]
  retry_for:
    description: Seconds, from the first try, within which a retry may still start.
    type: int
    default: 120
  timeout:
    description: Seconds one request may take.
    type: int
    default: 30
  ca_path:
    description: PEM file of the CA that signs the server's certificate.
    type: path
"""

EXAMPLES = r"""
- name: Look up the work pool
  galatek.prefect.api:
    url: http://127.0.0.1:4200/api/work_pools/galatek
    auth_string: "{{ prefect_worker_api_auth_string }}"
    status_code: [200, 404]
  register: pool
  no_log: true
"""

RETURN = r"""
status:
  description: HTTP status of the last answer (-1 when no answer came).
  type: int
  returned: always
json:
  description: The last answer's body, parsed, when it is JSON.
  type: raw
  returned: when the body is JSON
retries:
  description: Tries that were retried, and the status (or error) each got.
  type: list
  elements: str
  returned: always
elapsed:
  description: Seconds from the first try to the last answer.
  type: float
  returned: always
"""


RETRY_STATUSES = {429, 502, 503}
MAX_BACKOFF = 8.0
JITTER = 0.2


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delay-seconds or HTTP-date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff(attempt: int) -> float:
    """Exponential back-off with symmetric jitter, for answers without Retry-After."""
    return min(MAX_BACKOFF, 2.0**attempt) * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 (jitter, not a secret)


def lower_keys(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Header names lower-cased (uvicorn sends "retry-after", nginx "Retry-After")."""
    return {name.lower(): value for name, value in (headers or {}).items()}


def send(module: AnsibleModule) -> tuple[int, dict, bytes, str | None]:
    """One request: (status, headers, body, error). status -1 with an error: no answer."""
    params = module.params
    headers = dict(params["headers"])
    data = None
    if params["body"] is not None:
        data = json.dumps(params["body"])
        headers.setdefault("Content-Type", "application/json")
    user, _, password = params["auth_string"].partition(":")
    try:
        response = open_url(
            params["url"],
            data=data,
            headers=headers,
            method=params["method"].upper(),
            timeout=params["timeout"],
            url_username=user or None,
            url_password=password or None,
            force_basic_auth=bool(user),
            ca_path=params["ca_path"],
            use_netrc=False,
        )
        return response.status, lower_keys(response.headers), response.read(), None
    except HTTPError as error:
        return error.code, lower_keys(error.headers), error.read() or b"", None
    except (URLError, HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        return -1, {}, b"", f"{type(reason).__name__}: {reason}"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "method": {"type": "str", "default": "GET"},
            "body": {"type": "raw"},
            "headers": {"type": "dict", "default": {}},
            "auth_string": {"type": "str", "default": "", "no_log": True},
            "status_code": {"type": "list", "elements": "int", "default": [200]},
            "retry_for": {"type": "int", "default": 120},
            "timeout": {"type": "int", "default": 30},
            "ca_path": {"type": "path"},
        },
        supports_check_mode=False,
    )
    params = module.params
    idempotent = params["method"].upper() in {"GET", "HEAD"}
    started = time.monotonic()
    retries: list[str] = []
    while True:
        status, headers, body, error = send(module)
        refused = error is not None and "ConnectionRefused" in error
        retryable = status in RETRY_STATUSES or (status == -1 and (refused or idempotent))
        if retryable:
            wait = retry_after(headers.get("retry-after")) if status != -1 else None
            if wait is None:
                wait = backoff(len(retries))
            if time.monotonic() + wait - started <= params["retry_for"]:
                retries.append(str(status) if error is None else error)
                time.sleep(wait)
                continue
        break

    result = {
        "changed": False,
        "status": status,
        "retries": retries,
        "elapsed": round(time.monotonic() - started, 3),
    }
    with contextlib.suppress(ValueError):
        result["json"] = json.loads(body) if body else None
    if status not in params["status_code"]:
        answer = error or body.decode("utf-8", "replace")[:1000]
        module.fail_json(
            msg=f"{params['method'].upper()} {params['url']} answered {status}"
            f" after {len(retries)} retries: {answer}",
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
