"""The contact in the Notion "Email Sequence" database (Notion API 2025-09-03).

The database id is resolved once to its first data source
(``databases.retrieve`` -> ``data_sources[0].id``); contacts are found with
``data_sources.query`` filtered on the email property and created with a
``{"type": "data_source_id", ...}`` parent.

Property names are configurable: :data:`DEFAULT_PROPERTIES` maps a logical key
to the default Notion property name, :data:`PROPERTY_TYPES` gives the type each
property must have. Override names with the ``NOTION_PROPERTIES`` environment
variable (a JSON object, e.g. ``{"business": "Company"}``).

=====================  =====================  ===========
key                    default name           type
=====================  =====================  ===========
email                  Email                  email
name                   Name                   title
business               Business               rich_text
segment                Segment                select
assessment_score       Assessment Score       number
red_systems            Red Systems            number
orange_systems         Orange Systems         number
yellow_systems         Yellow Systems         number
green_systems          Green Systems          number
gps_score              GPS Score              number
money_score            Money Score            number
weakest_system_1       Weakest System 1       rich_text
weakest_system_2       Weakest System 2       rich_text
revenue_leak_total     Revenue Leak Total     number
sequence_status        Sequence Status        select
scheduled_email_ids    Scheduled Email IDs    rich_text
sequence_start         Sequence Start         date
=====================  =====================  ===========

``Sequence Status`` may also be a ``status`` property (with the options Pending, Partial
and Scheduled); the types are read from the data source once per process, and a
property missing or of another type fails the run at once, naming it.

``Sequence Status`` is ``Pending`` (contact saved, emails not all sent),
``Partial`` (some emails failed) or ``Scheduled`` (welcome sent and the whole
sequence scheduled). ``Scheduled Email IDs`` holds one ``step=resend-id`` line
per email sent. Together they are the lasting guard against sending twice:
Resend forgets idempotency keys after 24 hours, Notion does not.

One page per contact, although Notion has no idempotency keys and its query may not
find a page created a moment ago (no bound is documented; ``NOTION_QUERY_LAG_SECONDS``,
default 10, is the longest lag the flow allows for):

* a create whose answer was lost (a 5xx, a timeout, a dropped connection) may have
  made the page: the retry looks the contact up again, for up to the lag, before it
  creates one;
* a run that created the page waits (holding the address's lock) until the query finds
  it, up to the lag, so the next run for that address finds it too.

A run that ends after a lost create is run again by the recovery 20 s or more later,
beyond the default lag.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from notion_client import Client
from prefect import task
from prefect.cache_policies import NO_CACHE

from christmas_signup.inputs import Signup
from christmas_signup.resilience import NOTION_LIMIT, call_api, http_timeout_seconds, is_transient
from christmas_signup.settings import Settings, env_float

NOTION_VERSION = "2025-09-03"

PROPERTY_TYPES: dict[str, str] = {
    "email": "email",
    "name": "title",
    "business": "rich_text",
    "segment": "select",
    "assessment_score": "number",
    "red_systems": "number",
    "orange_systems": "number",
    "yellow_systems": "number",
    "green_systems": "number",
    "gps_score": "number",
    "money_score": "number",
    "weakest_system_1": "rich_text",
    "weakest_system_2": "rich_text",
    "revenue_leak_total": "number",
    "sequence_status": "select",
    "scheduled_email_ids": "rich_text",
    "sequence_start": "date",
}

DEFAULT_PROPERTIES: dict[str, str] = {
    "email": "Email",
    "name": "Name",
    "business": "Business",
    "segment": "Segment",
    "assessment_score": "Assessment Score",
    "red_systems": "Red Systems",
    "orange_systems": "Orange Systems",
    "yellow_systems": "Yellow Systems",
    "green_systems": "Green Systems",
    "gps_score": "GPS Score",
    "money_score": "Money Score",
    "weakest_system_1": "Weakest System 1",
    "weakest_system_2": "Weakest System 2",
    "revenue_leak_total": "Revenue Leak Total",
    "sequence_status": "Sequence Status",
    "scheduled_email_ids": "Scheduled Email IDs",
    "sequence_start": "Sequence Start",
}

#: Other types a property may have in the workspace (Notion's ``status`` type).
ALTERNATIVE_TYPES: dict[str, tuple[str, ...]] = {"sequence_status": ("status",)}

STATUS_PENDING = "Pending"
STATUS_PARTIAL = "Partial"
STATUS_SCHEDULED = "Scheduled"

#: Seconds between two lookups while waiting for the query to find a page.
LAG_POLL_SECONDS = 1.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """The contacts' data source: its id and the type of each property (by logical key)."""

    id: str
    types: dict[str, str]


_data_sources: dict[str, DataSource] = {}
#: Addresses whose page create may have happened without its answer (monotonic time of
#: the attempt); a retry in this process looks the contact up for the lag before creating.
_unconfirmed_creates: dict[str, float] = {}


def query_lag_seconds() -> float:
    """The longest time a new page may stay invisible to queries (see the module docstring)."""
    return env_float("NOTION_QUERY_LAG_SECONDS", 10.0)


def property_names(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Default property names with overrides applied; unknown keys are an error."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(DEFAULT_PROPERTIES))
    if unknown:
        raise ValueError(f"NOTION_PROPERTIES: unknown keys {unknown}")
    return {**DEFAULT_PROPERTIES, **overrides}


def make_client(settings: Settings) -> Client:
    """A Notion client; the SDK's own retries are off, the tasks retry instead."""
    return Client(
        auth=settings.notion_token.get_secret_value(),
        base_url=settings.notion_base_url,
        notion_version=NOTION_VERSION,
        timeout_ms=int(http_timeout_seconds() * 1000),
        retry=False,
    )


@dataclass(frozen=True)
class Contact:
    """What the flow needs to know about a contact page."""

    page_id: str
    created: bool
    status: str | None
    email_ids: dict[str, str] = field(default_factory=dict)
    sequence_start: datetime | None = None


def _text(content: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": content[:2000]}}]


def _value(prop_type: str, value: Any) -> dict[str, Any]:  # noqa: ANN401 - JSON value
    if prop_type in ("title", "rich_text"):
        return {prop_type: _text(value) if value else []}
    if prop_type in ("select", "status"):
        return {prop_type: {"name": value} if value else None}
    if prop_type == "date":
        return {"date": {"start": value.isoformat()} if value else None}
    return {prop_type: value}


def build_properties(
    values: dict[str, Any], names: dict[str, str], types: dict[str, str] | None = None
) -> dict[str, Any]:
    """Notion property values for the given logical keys (``types``: the data source's)."""
    types = {**PROPERTY_TYPES, **(types or {})}
    return {names[key]: _value(types[key], val) for key, val in values.items()}


def profile_values(signup: Signup) -> dict[str, Any]:
    """The contact's profile properties (everything except the sequence state)."""
    return {
        "email": signup.email,
        "name": signup.first_name,
        "business": signup.business_name,
        "segment": signup.segment.label,
        "assessment_score": signup.assessment_score,
        "red_systems": signup.red_systems,
        "orange_systems": signup.orange_systems,
        "yellow_systems": signup.yellow_systems,
        "green_systems": signup.green_systems,
        "gps_score": signup.gps_score,
        "money_score": signup.money_score,
        "weakest_system_1": signup.weakest_system_1,
        "weakest_system_2": signup.weakest_system_2,
        "revenue_leak_total": signup.revenue_leak_total,
    }


def format_email_ids(email_ids: dict[str, str]) -> str:
    """``step=id`` lines, as stored in the Scheduled Email IDs property."""
    return "\n".join(f"{step}={email_id}" for step, email_id in email_ids.items())


def parse_email_ids(text: str) -> dict[str, str]:
    """Inverse of :func:`format_email_ids`; ignores lines it does not understand."""
    ids: dict[str, str] = {}
    for line in text.splitlines():
        step, sep, email_id = line.strip().partition("=")
        if sep and step and email_id:
            ids[step.strip()] = email_id.strip()
    return ids


def contact_from_page(page: dict[str, Any], names: dict[str, str], created: bool) -> Contact:
    """Read the sequence state out of a Notion page object."""
    props = page.get("properties", {})
    status = props.get(names["sequence_status"], {})
    status_prop = status.get("select") or status.get("status") or {}
    ids_prop = props.get(names["scheduled_email_ids"], {}).get("rich_text") or []
    ids_text = "".join(part.get("plain_text", "") for part in ids_prop)
    date_prop = props.get(names["sequence_start"], {}).get("date") or {}
    start = date_prop.get("start")
    return Contact(
        page_id=page["id"],
        created=created,
        status=status_prop.get("name"),
        email_ids=parse_email_ids(ids_text),
        sequence_start=datetime.fromisoformat(start) if start else None,
    )


@task(
    name="notion-resolve-data-source",
    cache_policy=NO_CACHE,
)
def resolve_data_source(client: Client, database_id: str, names: dict[str, str]) -> DataSource:
    """The database's first data source and its property types (looked up once per
    process); a property missing or of another type is an error naming it."""
    if database_id not in _data_sources:
        database = call_api(NOTION_LIMIT, lambda: client.databases.retrieve(database_id))
        sources = database.get("data_sources") or []
        if not sources:
            raise ValueError(f"Notion database {database_id} has no data source")
        source_id = sources[0]["id"]
        source = call_api(NOTION_LIMIT, lambda: client.data_sources.retrieve(source_id))
        _data_sources[database_id] = DataSource(source_id, _property_types(source, names))
    return _data_sources[database_id]


def _property_types(source: dict[str, Any], names: dict[str, str]) -> dict[str, str]:
    found = source.get("properties") or {}
    types: dict[str, str] = {}
    for key, name in names.items():
        kind = (found.get(name) or {}).get("type")
        allowed = (PROPERTY_TYPES[key], *ALTERNATIVE_TYPES.get(key, ()))
        if kind not in allowed:
            raise ValueError(
                f"Notion property {name!r} ({key}) must be of type {' or '.join(allowed)}, "
                f"not {kind or 'missing'} (rename it in Notion or set NOTION_PROPERTIES)"
            )
        types[key] = kind
    return types


def find_contact_page(
    client: Client, data_source_id: str, email: str, names: dict[str, str]
) -> dict[str, Any] | None:
    """The oldest page whose email property equals ``email``, if any."""
    answer = call_api(
        NOTION_LIMIT,
        lambda: client.data_sources.query(
            data_source_id,
            filter={"property": names["email"], "email": {"equals": email}},
            sorts=[{"timestamp": "created_time", "direction": "ascending"}],
            page_size=1,
        ),
    )
    results = answer.get("results") or []
    return results[0] if results else None


def _wait_for_contact(
    client: Client, data_source_id: str, email: str, names: dict[str, str], since: float
) -> dict[str, Any] | None:
    """Look the contact up until the query finds it or the lag since ``since`` is over."""
    while True:
        page = find_contact_page(client, data_source_id, email, names)
        if page is not None or time.monotonic() - since >= query_lag_seconds():
            return page
        time.sleep(LAG_POLL_SECONDS)


def _create_contact(
    client: Client,
    source: DataSource,
    email: str,
    names: dict[str, str],
    properties: dict[str, Any],
) -> dict[str, Any]:
    """Create the page; a lost answer is remembered, so the retry looks again first."""
    attempted = time.monotonic()
    try:
        page = call_api(
            NOTION_LIMIT,
            lambda: client.pages.create(
                parent={"type": "data_source_id", "data_source_id": source.id},
                properties=properties,
            ),
        )
    except Exception as exc:
        if is_transient(exc):
            _unconfirmed_creates.setdefault(email, attempted)
        raise
    # Hold on (the caller holds the address's lock) until the query finds the new page,
    # so that no later lookup for this address misses it.
    if _wait_for_contact(client, source.id, email, names, attempted) is None:
        logger.warning("the Notion query did not find the new contact within the lag")
    _unconfirmed_creates.pop(email, None)
    return page


@task(
    name="notion-upsert-contact",
    cache_policy=NO_CACHE,
)
def upsert_contact(
    client: Client,
    source: DataSource,
    signup: Signup,
    names: dict[str, str],
    sequence_start: datetime,
) -> Contact:
    """Create the contact, or update its profile; the sequence state is kept as it is.

    The lookup runs again on every attempt, so a retry after a lost response finds the
    page the first attempt created instead of creating a second one; after a lost create
    it looks for up to the query lag (see the module docstring).
    """
    page = find_contact_page(client, source.id, signup.email, names)
    unconfirmed = _unconfirmed_creates.get(signup.email)
    if page is None and unconfirmed is not None:
        page = _wait_for_contact(client, source.id, signup.email, names, unconfirmed)
    profile = build_properties(profile_values(signup), names, source.types)
    if page is None:
        properties = {
            **profile,
            **build_properties(
                {"sequence_status": STATUS_PENDING, "sequence_start": sequence_start},
                names,
                source.types,
            ),
        }
        created = _create_contact(client, source, signup.email, names, properties)
        return contact_from_page(created, names, created=True)
    _unconfirmed_creates.pop(signup.email, None)
    contact = contact_from_page(page, names, created=False)
    if contact.sequence_start is None:
        profile.update(build_properties({"sequence_start": sequence_start}, names, source.types))
    updated = call_api(NOTION_LIMIT, lambda: client.pages.update(page["id"], properties=profile))
    return contact_from_page(updated, names, created=False)


@task(
    name="notion-record-sequence",
    cache_policy=NO_CACHE,
)
def record_sequence(
    client: Client,
    page_id: str,
    email_ids: dict[str, str],
    status: str,
    names: dict[str, str],
    *,
    types: dict[str, str] | None = None,
) -> None:
    """Write the sequence status and the sent email ids back to the contact."""
    properties = build_properties(
        {"sequence_status": status, "scheduled_email_ids": format_email_ids(email_ids)},
        names,
        types,
    )
    call_api(NOTION_LIMIT, lambda: client.pages.update(page_id, properties=properties))
