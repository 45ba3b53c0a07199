"""The welcome email and the nurture sequence, rendered per segment and sent with Resend.

Steps (delays from the sequence start, all well inside Resend's 30-day
``scheduled_at`` limit):

=============  =======  ==============================================
step           delay    content
=============  =======  ==============================================
welcome        now      the assessment results and what the segment means
day-2-fixes    2 days   the first fixes for the weakest systems
day-5-story    5 days   how a business in the same segment fixed it
day-10-offer   10 days  the Christmas review-call offer
=============  =======  ==============================================

Each step has an HTML (autoescaped) and a text Jinja2 template in
``templates/``; the segment picks the copy inside them. Every send carries the
idempotency key ``<step>/<sha256 of the address>`` (at most 77 characters, within
Resend's 256 for any address), so a retried send within Resend's 24 h key
lifetime returns the original email instead of sending a second one.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import resend
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from prefect import task
from prefect.cache_policies import NO_CACHE
from resend.http_client_requests import RequestsClient

from christmas_signup.inputs import Signup
from christmas_signup.resilience import RESEND_LIMIT, call_api, http_timeout_seconds
from christmas_signup.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Step:
    """One email of the sequence."""

    name: str
    delay: timedelta
    subject: str


#: Subjects carry no visitor-typed text (name, business, system names): whoever fills
#: the form must not be able to write a subject line sent from our domain. They may use
#: what the flow computes (``segment``, ``segment_label``); bodies may greet by name.
STEPS: tuple[Step, ...] = (
    Step("welcome", timedelta(0), "Your systems assessment results: {{ segment_label }}"),
    Step("day-2-fixes", timedelta(days=2), "Three fixes to make before Christmas"),
    Step("day-5-story", timedelta(days=5), "How one business turned its systems around"),
    Step("day-10-offer", timedelta(days=10), "A free Christmas review call"),
)


@dataclass(frozen=True)
class Message:
    """A rendered email, ready to send."""

    step: str
    to: str
    subject: str
    html: str
    text: str
    scheduled_at: str | None
    idempotency_key: str

    def params(self, sender: str) -> dict[str, Any]:
        """Resend ``Emails.send`` parameters."""
        params: dict[str, Any] = {
            "from": sender,
            "to": [self.to],
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
        }
        if self.scheduled_at:
            params["scheduled_at"] = self.scheduled_at
        return params

    def summary(self) -> dict[str, Any]:
        """What the dry run reports about this email."""
        data = asdict(self)
        data["html_chars"] = len(data.pop("html"))
        data["text_chars"] = len(data.pop("text"))
        return data


def _environments() -> tuple[Environment, Environment]:
    loader = FileSystemLoader(TEMPLATES)
    html = Environment(
        loader=loader,
        autoescape=select_autoescape(["html", "html.j2"], default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    # Plain-text bodies and subjects are never HTML, so nothing to escape.
    text = Environment(
        loader=loader,
        autoescape=False,  # noqa: S701
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    return html, text


def idempotency_key(step: str, email: str) -> str:
    """The stable Resend idempotency key of one step for one contact.

    The address is hashed: an address may be up to 200 characters, Resend's keys
    at most 256, and the key then carries no personal data into logs.
    """
    return f"{step}/{hashlib.sha256(email.encode()).hexdigest()}"


def format_scheduled_at(when: datetime) -> str:
    """ISO 8601 in UTC, as Resend's ``scheduled_at`` expects."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def render_sequence(signup: Signup, sequence_start: datetime) -> list[Message]:
    """All emails of the sequence for this signup, in order."""
    html_env, text_env = _environments()
    weakest = [w for w in (signup.weakest_system_1, signup.weakest_system_2) if w]
    context: dict[str, Any] = {
        **signup.model_dump(),
        "segment": signup.segment.value,
        "segment_label": signup.segment.label,
        "weakest": weakest,
        "focus": weakest[0] if weakest else "systems",
    }
    # Only what the flow computes: a subject naming a visitor's field fails to render.
    subject_context = {"segment": context["segment"], "segment_label": context["segment_label"]}
    messages = []
    for step in STEPS:
        scheduled_at = format_scheduled_at(sequence_start + step.delay) if step.delay else None
        messages.append(
            Message(
                step=step.name,
                to=signup.email,
                subject=text_env.from_string(step.subject).render(subject_context).strip(),
                html=html_env.get_template(f"{step.name}.html.j2").render(context),
                text=text_env.get_template(f"{step.name}.txt.j2").render(context),
                scheduled_at=scheduled_at,
                idempotency_key=idempotency_key(step.name, signup.email),
            )
        )
    return messages


def configure(settings: Settings) -> None:
    """Point the resend SDK at the configured API (module-level settings of the SDK)."""
    resend.api_key = settings.resend_api_key.get_secret_value()
    resend.api_url = settings.resend_base_url
    resend.default_http_client = RequestsClient(timeout=http_timeout_seconds())  # type: ignore[arg-type]


@task(
    name="resend-send-email",
    task_run_name="resend-send-{message.step}",
    cache_policy=NO_CACHE,
)
def send_email(message: Message, sender: str) -> str:
    """Send (or schedule) one email; returns the Resend email id."""
    response = call_api(
        RESEND_LIMIT,
        lambda: resend.Emails.send(
            message.params(sender),  # type: ignore[arg-type]
            {"idempotency_key": message.idempotency_key},
        ),
    )
    return str(response["id"])
