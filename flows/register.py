"""Create or update the signup deployment, or the global concurrency limits.

Run on a worker host with the worker venv's python and ``PREFECT_API_URL``
(and ``PREFECT_API_AUTH_STRING`` when the server needs it) in the environment; the
deploy (roles/prefect_deploy) runs it as::

    python register.py --source-dir /opt/galatek-flows/current --work-pool galatek
    python register.py --concurrency-limits

The first form deploys ``christmas_signup/flow.py:christmas_signup_handler`` from
code on local disk (``--source-dir``, default: this file's directory) to a
process work pool, with parameter schema enforcement, and prints one JSON line:
``{"flow_id": ..., "deployment_id": ..., "flow_name": ..., "deployment_name": ...}``.
Running it again changes nothing and prints the same ids.

The second form creates the global concurrency limits the flow's API tasks use
(``notion-api``, ``resend-api``; settings in
``christmas_signup.resilience.CONCURRENCY_LIMITS``), or corrects their settings,
and prints one JSON line:
``{"changed": bool, "limits": [{"name": ..., "action": "created|updated|unchanged", ...}]}``.

Logs go to stderr; stdout carries only the JSON line. Exit status 0 on success.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

ENTRYPOINT = "christmas_signup/flow.py:christmas_signup_handler"
FLOW_NAME = "christmas-signup-handler"

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
    args = parser.parse_args(argv)
    if not args.concurrency_limits and not args.work_pool:
        parser.error("--work-pool is required to deploy")
    return args


def deploy(source_dir: Path, work_pool: str, deployment_name: str) -> dict[str, Any]:
    """Create or update the deployment; return its ids and names."""
    from prefect import Flow  # noqa: PLC0415
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    source_dir = source_dir.resolve()
    if not (source_dir / ENTRYPOINT.split(":", 1)[0]).is_file():
        raise FileNotFoundError(f"{ENTRYPOINT} not found under {source_dir}")
    flow = Flow.from_source(source=str(source_dir), entrypoint=ENTRYPOINT)
    # Prefect prints progress with rich to stdout; stdout is reserved for the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        deployment_id = flow.deploy(
            name=deployment_name,
            work_pool_name=work_pool,
            enforce_parameter_schema=True,
            build=False,
            push=False,
            print_next_steps=False,
            description="Assessment signup -> Notion contact + Resend welcome sequence.",
        )
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    return {
        "flow_id": str(deployment.flow_id),
        "deployment_id": str(deployment.id),
        "flow_name": flow.name,
        "deployment_name": deployment.name,
    }


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


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints exactly one JSON line on stdout."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    if args.concurrency_limits:
        result = ensure_concurrency_limits(args.source_dir)
    else:
        result = deploy(args.source_dir, args.work_pool, args.deployment_name)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
