"""Erase one person: what the signup flow holds of an address, everywhere it put it.

Run on a worker host with the worker venv's python and the worker's environment (the
Prefect API settings and the flow's Notion and Resend secrets), the address on stdin;
``playbooks/forget.yml`` does exactly that::

    printf %s ada@example.com | python forget.py

In this order:

1. **Suppress**: a suppression entry for the address's hash (``christmas_signup.privacy``),
   so from now on a run for that address records and sends nothing, whenever it starts.
2. Take the address's ``signup-lock-<n>``, as a signup run does, so no run of that
   address is half-way through Notion and Resend while the rest happens.
3. **Resend**: every email id recorded on the contact (``Scheduled Email IDs``) is read,
   and each one still ``scheduled`` is cancelled (``POST /emails/{id}/cancel``; a
   sending-only API key gets 401 there: use a full-access key). Emails already sent stay
   in Resend's logs for the account's retention; Resend has no call to delete them.
4. **Notion**: every contact page with that email is blanked (each property the flow
   writes emptied, so the trash and the API no longer show the address) and moved to
   the trash (``in_trash: true``), where Notion deletes it for good after 30 days.
5. **Prefect**: every run of ``christmas-signup-handler`` whose ``email`` parameter is the
   address is deleted, whatever its state; the server deletes its task runs, states and
   logs with it (logs in a background task, within seconds).

It prints one JSON line naming the address only by its tag (``address``, the first 12
hex digits of its SHA-256) and what it did: ``suppression`` (``created`` or ``kept``),
``emails_cancelled`` and ``emails_not_scheduled`` (Resend ids), ``pages_trashed``
(Notion page ids) and ``flow_runs_deleted`` (Prefect flow run ids). Running it again
is harmless: it finds nothing more and keeps the suppression. Exit status 0 on success,
2 for an input that is not an address; any API error stops it (run it again).

Why a script and not a Prefect deployment: a deployment's run keeps its parameters, so
the run that erases an address would itself keep the address.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any
from uuid import UUID

from christmas_signup import emails, notion, privacy
from christmas_signup.inputs import EMAIL_PATTERN
from christmas_signup.resilience import NOTION_LIMIT, RESEND_LIMIT, call_api, signup_lock
from christmas_signup.settings import load_settings

FLOW_NAME = "christmas-signup-handler"
REASON = "erased on request"
#: Runs read per request (Prefect's default page limit).
PAGE_SIZE = 200
#: The properties the flow writes: all emptied before the page goes to the trash.
BLANK_KEYS: tuple[str, ...] = tuple(notion.DEFAULT_PROPERTIES)

log = logging.getLogger("forget")


def read_address(text: str) -> str:
    """The normalised address, or ValueError."""
    address = privacy.normalise(text)
    if not re.match(EMAIL_PATTERN, address) or len(address) > 254:
        raise ValueError("not an email address")
    return address


def contact_pages(client: Any, data_source_id: str, address: str, names: dict[str, str]) -> list:  # noqa: ANN401 - the Notion SDK is untyped
    """Every page (not in the trash) whose email property is ``address``."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {
            "filter": {"property": names["email"], "email": {"equals": address}},
            "page_size": 100,
        }
        if cursor:
            query["start_cursor"] = cursor
        answer = call_api(
            NOTION_LIMIT, lambda query=query: client.data_sources.query(data_source_id, **query)
        )
        pages += answer.get("results") or []
        cursor = answer.get("next_cursor")
        if not answer.get("has_more") or not cursor:
            return pages


def cancel_scheduled(email_ids: list[str], report: dict[str, Any]) -> None:
    """Cancel each email of ``email_ids`` that Resend still holds as scheduled."""
    import resend  # noqa: PLC0415

    for email_id in email_ids:
        try:
            sent = call_api(RESEND_LIMIT, lambda email_id=email_id: resend.Emails.get(email_id))
        except resend.exceptions.ResendError as exc:
            if str(exc.code) != "404":
                raise
            sent = {}  # unknown to this Resend account: nothing to cancel
        if sent.get("last_event") == "scheduled":
            call_api(RESEND_LIMIT, lambda email_id=email_id: resend.Emails.cancel(email_id))
            report["emails_cancelled"].append(email_id)
        else:
            report["emails_not_scheduled"].append(email_id)


def trash_page(
    client: Any,  # noqa: ANN401 - the Notion SDK is untyped
    page_id: str,
    names: dict[str, str],
    types: dict[str, str],
) -> None:
    """Empty every property the flow writes, then move the page to the trash."""
    blank = notion.build_properties(dict.fromkeys(BLANK_KEYS), names, types)
    call_api(NOTION_LIMIT, lambda: client.pages.update(page_id, properties=blank))
    call_api(NOTION_LIMIT, lambda: client.pages.update(page_id, in_trash=True))


def address_runs(client: Any, address: str) -> list[UUID]:  # noqa: ANN401 - Prefect client
    """Ids of every signup run whose ``email`` parameter is ``address``."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName  # noqa: PLC0415
    from prefect.client.schemas.sorting import FlowRunSort  # noqa: PLC0415

    flows = FlowFilter(name=FlowFilterName(any_=[FLOW_NAME]))
    found: list[UUID] = []
    offset = 0
    while True:
        runs = client.read_flow_runs(
            flow_filter=flows, sort=FlowRunSort.ID_DESC, limit=PAGE_SIZE, offset=offset
        )
        for run in runs:
            email = run.parameters.get("email")
            if isinstance(email, str) and privacy.normalise(email) == address:
                found.append(run.id)
        if len(runs) < PAGE_SIZE:
            return found
        offset += PAGE_SIZE


def forget(address: str) -> dict[str, Any]:
    """Erase ``address`` (already normalised) as the module docstring says; the report."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    report: dict[str, Any] = {
        "address": privacy.address_tag(address),
        "suppression": "created" if privacy.suppress(address, REASON) else "kept",
        "emails_cancelled": [],
        "emails_not_scheduled": [],
        "pages_trashed": [],
        "flow_runs_deleted": [],
    }
    settings = load_settings()
    names = notion.property_names(settings.notion_properties)
    client = notion.make_client(settings)
    emails.configure(settings)
    with signup_lock(address):
        source = notion.resolve_data_source.fn(client, settings.notion_database_id, names)
        for page in contact_pages(client, source.id, address, names):
            contact = notion.contact_from_page(page, names, created=False)
            cancel_scheduled(list(contact.email_ids.values()), report)
            trash_page(client, contact.page_id, names, source.types)
            report["pages_trashed"].append(contact.page_id)
        with get_client(sync_client=True) as prefect:
            for run_id in address_runs(prefect, address):
                prefect.delete_flow_run(run_id)
                report["flow_runs_deleted"].append(str(run_id))
    log.info(
        "address %s: %d emails cancelled, %d pages trashed, %d flow runs deleted",
        report["address"],
        len(report["emails_cancelled"]),
        len(report["pages_trashed"]),
        len(report["flow_runs_deleted"]),
    )
    return report


def main(stdin: Any = None) -> int:  # noqa: ANN401 - a text stream
    """Entry point; prints exactly one JSON line on stdout."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        address = read_address((stdin or sys.stdin).read())
    except ValueError as exc:
        log.error("%s (give one address on stdin)", exc)
        return 2
    report = forget(address)
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
