"""Prefect flow ``christmas-signup-handler``: one assessment signup -> one Notion
contact, one welcome email and the scheduled nurture sequence in Resend.

Entrypoint (relative to the shipped ``flows/`` directory):
``christmas_signup/flow.py:christmas_signup_handler``.

Order of work, each API call a separate retried task:

1. validate the parameters (:class:`christmas_signup.inputs.Signup`), fail on error;
2. with ``dry_run=True``: render every email and return a summary, no API call;
3. load the secrets (fail naming any that is missing);
4. take the address's lock (``signup-lock-<n>``, see ``resilience.py``), so two
   runs for one address never work at the same time;
5. resolve the Notion data source, upsert the contact by email (unless the address
   is on the suppression list, ``privacy.py``: then nothing is recorded or sent);
6. if the contact's ``Sequence Status`` is already ``Scheduled``, stop: nothing new
   is sent;
7. send the steps not yet recorded on the contact, in order; each email's Resend
   id is written to the contact as soon as it is sent, so a run killed between
   two sends is resumed by the next run at the first unsent step (a send whose id
   was not recorded is repeated with the same idempotency key, and Resend answers
   with the original email instead of sending it twice);
8. on a failure, mark the contact ``Partial`` and fail the run: with
   :class:`TransientSignupError` when the cause passes (429, 5xx, timeouts, Notion's
   409/529, a long ``Retry-After`` or Resend's daily quota; the recovery runs it again),
   with the original error otherwise (permanent).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger

from christmas_signup import emails, notion, privacy
from christmas_signup.inputs import (
    BusinessName,
    Email,
    FirstName,
    OptionalMoney,
    OptionalScore,
    OptionalSystemName,
    Score,
    Signup,
    SystemCount,
)
from christmas_signup.resilience import (
    TransientSignupError,
    api_task_options,
    is_transient,
    signup_lock,
)
from christmas_signup.settings import Settings, load_settings, secrets_present

#: A stored sequence start is reused (so re-sent emails keep the same body and
#: Resend's idempotency key matches) only while Resend still remembers the keys.
SEQUENCE_START_REUSE = timedelta(hours=23)


class SequenceSendError(RuntimeError):
    """One of the emails could not be sent for good (a permanent error); the others
    were recorded."""


@flow(name="christmas-signup-handler", validate_parameters=True)
def christmas_signup_handler(  # noqa: PLR0917 - Prefect maps the parameters by name
    email: Email,
    first_name: FirstName,
    business_name: BusinessName,
    assessment_score: Score,
    red_systems: SystemCount,
    orange_systems: SystemCount,
    yellow_systems: SystemCount,
    green_systems: SystemCount,
    gps_score: OptionalScore = None,
    money_score: OptionalScore = None,
    weakest_system_1: OptionalSystemName = None,
    weakest_system_2: OptionalSystemName = None,
    revenue_leak_total: OptionalMoney = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Handle one assessment signup (see the module docstring).

    Returns a summary: ``email``, ``segment``, ``dry_run`` and, for a dry run,
    ``emails`` (step, subject, scheduled_at, idempotency key, sizes) and
    ``secrets_present``; for a real run ``page_id``, ``created``,
    ``sequence_status``, ``sent`` (step -> Resend id, this run) and
    ``already_sent`` (steps recorded by an earlier run); ``suppressed`` when the
    address is on the suppression list. Log lines name the address by its tag
    (``privacy.address_tag``), never by the address.
    """
    logger = get_run_logger()
    signup = Signup(
        email=email,
        first_name=first_name,
        business_name=business_name,
        assessment_score=assessment_score,
        red_systems=red_systems,
        orange_systems=orange_systems,
        yellow_systems=yellow_systems,
        green_systems=green_systems,
        gps_score=gps_score,
        money_score=money_score,
        weakest_system_1=weakest_system_1,
        weakest_system_2=weakest_system_2,
        revenue_leak_total=revenue_leak_total,
    )
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    summary: dict[str, Any] = {
        "email": signup.email,
        "segment": signup.segment.value,
        "dry_run": dry_run,
    }
    if dry_run:
        messages = emails.render_sequence(signup, now)
        summary["emails"] = [message.summary() for message in messages]
        summary["secrets_present"] = secrets_present()
        logger.info(
            "dry run for address %s (%s): nothing sent",
            privacy.address_tag(signup.email),
            signup.segment,
        )
        return summary

    settings = load_settings()
    try:
        # One run at a time per address: two identical signups at the same instant
        # must not both find "no contact" and create two pages.
        with signup_lock(signup.email):
            summary.update(_record_and_send(signup, settings, now))
    except Exception as exc:
        if is_transient(exc) and not isinstance(exc, TransientSignupError):
            raise TransientSignupError(f"{type(exc).__name__}: {exc}") from exc
        raise
    logger.info(
        "address %s: %s sent/scheduled",
        privacy.address_tag(signup.email),
        ", ".join(summary["sent"]) or "nothing new",
    )
    return summary


def _record_and_send(signup: Signup, settings: Settings, now: datetime) -> dict[str, Any]:
    """Upsert the contact, then send each step not yet recorded on it, recording each
    email's id on the contact as soon as it is sent."""
    suppressed = privacy.suppression(signup.email)
    if suppressed is not None:
        get_run_logger().info(
            "address %s is suppressed (%s): nothing recorded or sent",
            privacy.address_tag(signup.email),
            suppressed.get("reason"),
        )
        return {
            "page_id": None,
            "created": False,
            "sent": {},
            "already_sent": [],
            "sequence_status": None,
            "suppressed": True,
        }
    names = notion.property_names(settings.notion_properties)
    options = api_task_options()
    client = notion.make_client(settings)
    emails.configure(settings)

    source = notion.resolve_data_source.with_options(**options)(
        client, settings.notion_database_id, names
    )
    contact = notion.upsert_contact.with_options(**options)(client, source, signup, names, now)
    result: dict[str, Any] = {
        "page_id": contact.page_id,
        "created": contact.created,
        "sent": {},
        "already_sent": sorted(contact.email_ids),
        "sequence_status": contact.status,
    }
    if contact.status == notion.STATUS_SCHEDULED:
        get_run_logger().info(
            "address %s already has its sequence: nothing sent", privacy.address_tag(signup.email)
        )
        return result

    start = contact.sequence_start
    if start is None or now - start > SEQUENCE_START_REUSE:
        start = now
    email_ids = dict(contact.email_ids)

    def record(status: str) -> None:
        notion.record_sequence.with_options(**options)(
            client, contact.page_id, email_ids, status, names, types=source.types
        )

    messages = emails.render_sequence(signup, start)
    for message in messages:
        if message.step in email_ids:
            continue
        state = emails.send_email.with_options(**options)(
            message, settings.resend_from, return_state=True
        )
        if not state.is_completed():
            failure = state.result(raise_on_failure=False)
            record(notion.STATUS_PARTIAL)
            error = TransientSignupError if is_transient(failure) else SequenceSendError
            raise error(f"email step {message.step!r} failed: {failure}") from failure
        email_ids[message.step] = state.result()
        result["sent"][message.step] = email_ids[message.step]
        done = all(m.step in email_ids for m in messages)
        status = notion.STATUS_SCHEDULED if done else notion.STATUS_PENDING
        record(status)
        result["sequence_status"] = status
    if result["sequence_status"] != notion.STATUS_SCHEDULED:
        # Everything was sent before, but the last status write was lost.
        record(notion.STATUS_SCHEDULED)
        result["sequence_status"] = notion.STATUS_SCHEDULED
    return result
