"""Create or update the signup deployment and its recovery, the global concurrency
limits, or the automations.

Run on a worker host with the worker venv's python and ``PREFECT_API_URL``
(and ``PREFECT_API_AUTH_STRING`` when the server needs it) in the environment; the
deploy (roles/prefect_deploy) runs it as::

    python register.py --source-dir /opt/galatek-flows/current --work-pool galatek
    python register.py --concurrency-limits
    python register.py --automations --deployment-id <signup deployment id>
    python register.py --check-resend --env-file /etc/prefect-worker/prefect-worker.env

The first form deploys ``christmas_signup/flow.py:christmas_signup_handler`` from
code on local disk (``--source-dir``, default: this file's directory) to a
process work pool, with parameter schema enforcement and flow-run heartbeats
every ``--heartbeat-seconds``, then the recovery
(``christmas_signup/recovery.py:recover_signups``, deployment ``recovery``) on an
interval of ``--recovery-interval-seconds``, one run at a time, with the retry
window ``--retry-window-hours``. It prints one JSON line:
``{"flow_id": ..., "deployment_id": ..., "flow_name": ..., "deployment_name": ...,
"recovery_deployment_id": ...}``. Running it again changes nothing and prints the
same ids.

The second form creates the global concurrency limits the flow's API tasks use
(``notion-api``, ``resend-api``; settings in
``christmas_signup.resilience.CONCURRENCY_LIMITS``), or corrects their settings,
and prints one JSON line:
``{"changed": bool, "limits": [{"name": ..., "action": "created|updated|unchanged", ...}]}``.

The third form creates or corrects (``changed`` only when something differs):

* the automation ``crash-zombie-flow-runs``, Prefect's documented zombie
  detection: a flow run whose heartbeats stop for 3 heartbeat periods (and that
  did not finish) is set to ``Crashed``;
* the notification blocks ``signup-alert-email`` (an email through Resend's API
  to ``SIGNUP_ALERT_EMAIL``, from ``RESEND_FROM``, with ``RESEND_API_KEY``, at
  ``RESEND_BASE_URL``) and ``signup-alert-webhook`` (a Slack-compatible webhook,
  ``{"text": ...}`` to ``SIGNUP_ALERT_WEBHOOK_URL``), each only when its address
  is set;
* the automation ``signup-alert``: when a run of the signup deployment is set to
  ``Abandoned`` (by the recovery: a permanent error, or the retry window ended),
  one notification through each block.

It prints ``{"changed": bool, "items": [{"name": ..., "action":
"created|updated|unchanged|deleted"}]}``.

The fourth form checks, before a release goes live, that the flow can send: the Resend
key and sender the flow would use (``RESEND_API_KEY``, ``RESEND_FROM``, ``RESEND_BASE_URL``
from ``--env-file``, the worker's environment file, else this environment, else the
Secret blocks, as the flow reads them). It lists the team's domains (``GET /domains``):
a sending-only key (401 ``restricted_api_key``: the check, and reading or cancelling
emails, need "Full access"), an invalid key, or a sender whose domain is missing or not
``verified`` fails with exit status 2 and one line on stderr saying which. Nothing is
sent. It prints ``{"sender_domain": ..., "status": "verified"}``.

Logs go to stderr; stdout carries only the JSON line. Exit status 0 on success.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

ENTRYPOINT = "christmas_signup/flow.py:christmas_signup_handler"
FLOW_NAME = "christmas-signup-handler"
RECOVERY_ENTRYPOINT = "christmas_signup/recovery.py:recover_signups"
RECOVERY_DEPLOYMENT = "recovery"
ZOMBIE_AUTOMATION = "crash-zombie-flow-runs"
ALERT_AUTOMATION = "signup-alert"
EMAIL_BLOCK = "signup-alert-email"
WEBHOOK_BLOCK = "signup-alert-webhook"
ALERT_SUBJECT = "Signup abandoned: {{ flow_run.parameters.email }}"
ALERT_BODY = (
    "The signup of {{ flow_run.parameters.email }} did not complete and is no longer "
    "retried: {{ flow_run.state.message }}\n"
    "Flow run {{ flow_run.name }} ({{ flow_run.id }}): {{ flow_run|ui_url }}\n"
    "Runbook: docs/runbook.md, 'An alert arrived'."
)

log = logging.getLogger("register")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source-dir",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="directory holding christmas_signup/ (default: this file's directory)",
    )
    parser.add_argument("--work-pool", help="process work pool name (required to deploy)")
    parser.add_argument("--deployment-name", default="signup")
    parser.add_argument(
        "--concurrency-limits",
        action="store_true",
        help="create or update the global concurrency limits instead of deploying",
    )
    parser.add_argument(
        "--automations",
        action="store_true",
        help="create or update the automations and alert blocks instead of deploying",
    )
    parser.add_argument(
        "--check-resend",
        action="store_true",
        help="check the Resend key and sender domain instead of deploying",
    )
    parser.add_argument(
        "--env-file", type=Path, help="the worker's environment file (for --check-resend)"
    )
    parser.add_argument("--deployment-id", help="the signup deployment (for --automations)")
    parser.add_argument("--heartbeat-seconds", type=int, default=30, help="30 or more")
    parser.add_argument("--recovery-interval-seconds", type=int, default=60)
    parser.add_argument("--retry-window-hours", type=float, default=24.0)
    args = parser.parse_args(argv)
    if args.automations and not args.deployment_id:
        parser.error("--deployment-id is required with --automations")
    if (
        not (args.concurrency_limits or args.automations or args.check_resend)
        and not args.work_pool
    ):
        parser.error("--work-pool is required to deploy")
    if args.heartbeat_seconds < 30:
        parser.error("--heartbeat-seconds must be 30 or more (Prefect's minimum)")
    return args


def deploy(args: argparse.Namespace) -> dict[str, Any]:
    """Create or update the signup and recovery deployments; return their ids and names."""
    from prefect import Flow  # noqa: PLC0415
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.objects import ConcurrencyLimitConfig  # noqa: PLC0415

    source_dir = args.source_dir.resolve()
    for entrypoint in (ENTRYPOINT, RECOVERY_ENTRYPOINT):
        if not (source_dir / entrypoint.split(":", 1)[0]).is_file():
            raise FileNotFoundError(f"{entrypoint} not found under {source_dir}")
    # Runs send heartbeats, so the zombie automation can tell a dead run from a slow one.
    job_variables = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(args.heartbeat_seconds)}}
    flow = Flow.from_source(source=str(source_dir), entrypoint=ENTRYPOINT)
    recovery = Flow.from_source(source=str(source_dir), entrypoint=RECOVERY_ENTRYPOINT)
    # Prefect prints progress with rich to stdout; stdout is reserved for the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        deployment_id = flow.deploy(
            name=args.deployment_name,
            work_pool_name=args.work_pool,
            job_variables=job_variables,
            enforce_parameter_schema=True,
            build=False,
            push=False,
            print_next_steps=False,
            description="Assessment signup -> Notion contact + Resend welcome sequence.",
        )
        recovery_id = recovery.deploy(
            name=RECOVERY_DEPLOYMENT,
            work_pool_name=args.work_pool,
            job_variables=job_variables,
            interval=args.recovery_interval_seconds,
            parameters={
                "signup_deployment_id": str(deployment_id),
                "window_hours": args.retry_window_hours,
            },
            # One at a time; a run due while one is busy is cancelled, not queued.
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW"),
            enforce_parameter_schema=True,
            build=False,
            push=False,
            print_next_steps=False,
            description="Runs unfinished signups again; abandons them after the window.",
        )
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    return {
        "flow_id": str(deployment.flow_id),
        "deployment_id": str(deployment.id),
        "flow_name": flow.name,
        "deployment_name": deployment.name,
        "recovery_deployment_id": str(recovery_id),
    }


def _normal(value: Any) -> Any:  # noqa: ANN401 - JSON
    """JSON with lists of strings sorted (sets come back in any order)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        items = [_normal(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return value


def _ensure_automation(client: Any, wanted: Any) -> str:  # noqa: ANN401
    """Create ``wanted`` (an AutomationCore), or update the one of its name when it differs."""
    fields = {"description", "enabled", "trigger", "actions", "actions_on_trigger"}
    fields |= {"actions_on_resolve"}
    desired = _normal(wanted.model_dump(mode="json", include=fields))
    existing = client.read_automations_by_name(wanted.name)
    if not existing:
        client.create_automation(wanted)
        return "created"
    current = existing[0]
    for extra in existing[1:]:  # one automation per name
        client.delete_automation(extra.id)
    if _normal(current.model_dump(mode="json", include=fields)) == desired and not existing[1:]:
        return "unchanged"
    client.update_automation(current.id, wanted)
    return "updated"


def _ensure_block(name: str, wanted: Any) -> tuple[str, Any]:  # noqa: ANN401
    """Save the notification block ``wanted`` as ``name`` when it differs; return its id."""
    try:
        current = type(wanted).load(name, _sync=True)
    except ValueError:
        current = None
    if current is not None:
        fields = set(type(wanted).model_fields) - {"secrets"}
        same = current.model_dump(mode="json", include=fields) == wanted.model_dump(
            mode="json", include=fields
        ) and (current.secrets.get_secret_value() == wanted.secrets.get_secret_value())
        if same:
            return "unchanged", current._block_document_id
    block_id = wanted.save(name, overwrite=True, _sync=True)
    return ("updated" if current else "created"), block_id


def alert_blocks(environ: dict[str, str]) -> dict[str, Any]:
    """The notification blocks the environment asks for (see the module docstring)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock  # noqa: PLC0415

    blocks: dict[str, Any] = {}
    if environ.get("SIGNUP_ALERT_EMAIL"):
        missing = [v for v in ("RESEND_API_KEY", "RESEND_FROM") if not environ.get(v)]
        if missing:
            raise ValueError(f"SIGNUP_ALERT_EMAIL needs {', '.join(missing)}")
        base = (environ.get("RESEND_BASE_URL") or "https://api.resend.com").rstrip("/")
        blocks[EMAIL_BLOCK] = CustomWebhookNotificationBlock(
            name=EMAIL_BLOCK,
            url=f"{base}/emails",
            method="POST",
            headers={"Authorization": "Bearer {{resend_api_key}}"},
            json_data={
                "from": environ["RESEND_FROM"],
                "to": [environ["SIGNUP_ALERT_EMAIL"]],
                "subject": "{{subject}}",
                "text": "{{body}}",
            },
            secrets={"resend_api_key": environ["RESEND_API_KEY"]},
        )
    if environ.get("SIGNUP_ALERT_WEBHOOK_URL"):
        blocks[WEBHOOK_BLOCK] = CustomWebhookNotificationBlock(
            name=WEBHOOK_BLOCK,
            url="{{webhook_url}}",  # the URL is the webhook's secret
            method="POST",
            json_data={"text": "{{subject}}\n{{body}}"},
            secrets={"webhook_url": environ["SIGNUP_ALERT_WEBHOOK_URL"]},
        )
    return blocks


def ensure_automations(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    """The zombie detection, the alert blocks and the alert automation (module docstring)."""
    from datetime import timedelta  # noqa: PLC0415

    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.objects import StateType  # noqa: PLC0415
    from prefect.events.actions import ChangeFlowRunState, SendNotification  # noqa: PLC0415
    from prefect.events.schemas.automations import (  # noqa: PLC0415
        AutomationCore,
        EventTrigger,
        Posture,
    )
    from prefect.events.schemas.events import ResourceSpecification  # noqa: PLC0415

    flow_runs = ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]})
    zombie = AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="Marks a flow run Crashed when its heartbeats stop (Prefect's zombie flows).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=flow_runs,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * args.heartbeat_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message="Flow run marked as crashed due to missing heartbeats.",
            )
        ],
    )
    report = []
    with get_client(sync_client=True) as client:
        report.append({"name": ZOMBIE_AUTOMATION, "action": _ensure_automation(client, zombie)})
        blocks = alert_blocks(environ)
        block_ids = []
        for name, block in blocks.items():
            action, block_id = _ensure_block(name, block)
            block_ids.append(block_id)
            report.append({"name": name, "action": action})
        alert = AutomationCore(
            name=ALERT_AUTOMATION,
            description="One notification to on-call when a signup is abandoned.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Abandoned"},
                match=flow_runs,
                match_related=ResourceSpecification(
                    {"prefect.resource.id": f"prefect.deployment.{args.deployment_id}"}
                ),
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                SendNotification(block_document_id=block_id, subject=ALERT_SUBJECT, body=ALERT_BODY)
                for block_id in block_ids
            ],
        )
        if block_ids:
            report.append({"name": ALERT_AUTOMATION, "action": _ensure_automation(client, alert)})
        else:
            for current in client.read_automations_by_name(ALERT_AUTOMATION):
                client.delete_automation(current.id)
                report.append({"name": ALERT_AUTOMATION, "action": "deleted"})
    for item in report:
        log.info("%s: %s", item["name"], item["action"])
    return {"changed": any(i["action"] != "unchanged" for i in report), "items": report}


def ensure_concurrency_limits(source_dir: Path) -> dict[str, Any]:
    """Create missing limits, correct changed ones; report what happened."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import (  # noqa: PLC0415
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    sys.path.insert(0, str(source_dir.resolve()))
    from christmas_signup.resilience import CONCURRENCY_LIMITS  # noqa: PLC0415

    report = []
    with get_client(sync_client=True) as client:
        for wanted in CONCURRENCY_LIMITS:
            name = wanted["name"]
            try:
                current = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                current = None
            if current is None:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(active=True, **wanted)
                )
                action = "created"
            elif (
                current.limit != wanted["limit"]
                or float(current.slot_decay_per_second or 0) != wanted["slot_decay_per_second"]
                or not current.active
            ):
                client.update_global_concurrency_limit(
                    name,
                    GlobalConcurrencyLimitUpdate(
                        limit=wanted["limit"],
                        slot_decay_per_second=wanted["slot_decay_per_second"],
                        active=True,
                    ),
                )
                action = "updated"
            else:
                action = "unchanged"
            log.info("concurrency limit %s: %s", name, action)
            report.append({**wanted, "action": action})
    return {"changed": any(r["action"] != "unchanged" for r in report), "limits": report}


class ResendCheckError(RuntimeError):
    """The flow could not send with this Resend key and sender."""


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a systemd environment file (values may be double-quoted)."""
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            words = shlex.split(value, posix=True)
            values[name] = words[0] if words else ""
    return values


def check_resend(source_dir: Path) -> dict[str, Any]:
    """The Resend key may list domains and the sender's domain is verified (see the module
    docstring); raise :class:`ResendCheckError` saying what is wrong."""
    import httpx  # noqa: PLC0415

    sys.path.insert(0, str(source_dir.resolve()))
    from christmas_signup.settings import (  # noqa: PLC0415
        DEFAULT_RESEND_BASE_URL,
        lookup_secret,
    )

    key, sender = lookup_secret("resend_api_key"), lookup_secret("resend_from")
    if not key or not sender:
        raise ResendCheckError("RESEND_API_KEY and RESEND_FROM must be set for the flow")
    domain = sender.rpartition("@")[2].rstrip(">").strip().lower()
    base = (os.environ.get("RESEND_BASE_URL") or DEFAULT_RESEND_BASE_URL).rstrip("/")
    try:
        answer = httpx.get(
            f"{base}/domains", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        raise ResendCheckError(f"Resend did not answer at {base}: {exc}") from exc
    try:
        body = answer.json()
    except ValueError:
        body = {}
    name = body.get("name") if isinstance(body, dict) else None
    if answer.status_code == 401 and name == "restricted_api_key":
        raise ResendCheckError(
            "RESEND_API_KEY is a sending-only key (Resend: restricted_api_key); give the flow "
            "a key with Full access (needed to check the sender and to read or cancel emails)"
        )
    if answer.status_code in (400, 401, 403):
        raise ResendCheckError(f"RESEND_API_KEY is refused by Resend ({answer.status_code} {name})")
    if answer.status_code != 200:
        raise ResendCheckError(f"Resend answered {answer.status_code} {name} to GET /domains")
    statuses = {d.get("name", "").lower(): d.get("status") for d in body.get("data") or []}
    if domain not in statuses:
        raise ResendCheckError(
            f"RESEND_FROM's domain {domain} is not a domain of this Resend team "
            f"(it has: {', '.join(sorted(statuses)) or 'none'})"
        )
    if statuses[domain] != "verified":
        raise ResendCheckError(
            f"RESEND_FROM's domain {domain} is not verified in Resend "
            f"(status: {statuses[domain]}); verify it at https://resend.com/domains"
        )
    return {"sender_domain": domain, "status": "verified"}


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints exactly one JSON line on stdout."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    if args.check_resend:
        if args.env_file:
            os.environ.update(read_env_file(args.env_file))
        try:
            result = check_resend(args.source_dir)
        except ResendCheckError as exc:
            sys.stderr.write(f"DEPLOY REFUSED: {exc}\n")
            return 2
    elif args.concurrency_limits:
        result = ensure_concurrency_limits(args.source_dir)
    elif args.automations:
        result = ensure_automations(args, dict(os.environ))
    else:
        result = deploy(args)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
