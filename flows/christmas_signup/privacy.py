"""What the flows keep of an address: a hash, never the address itself.

* :func:`address_hash` is the SHA-256 of the (already normalised, lower-cased) address,
  the same digest Resend's idempotency keys carry (``<step>/<hash>``).
* :func:`address_tag` is its first 12 hex digits: what log lines show instead of the
  address. An operator finds a contact's lines with
  ``printf %s ada@example.com | sha256sum | cut -c1-12``.
* :func:`redact` replaces every address inside a text (an error message from an API)
  with its tag, for log lines whose text comes from elsewhere.
* The **suppression list**: one Prefect Variable per suppressed address,
  ``suppressed-<address hash>``, tagged ``suppression``, whose value is only the reason
  and the date. A signup of a suppressed address records nothing and sends nothing.

A hash cannot be turned back into the address, but anyone holding a candidate address
can check it against the list: the list says "this address asked to be forgotten", and
nothing more (no name, no business, no page, no run).

Why Prefect Variables: the check must hold across every worker host and outlive the
Notion page and the flow runs (which are erased); the Prefect server is the state they
all share. A Variable is found by name in one API call (no list to read and rewrite, so
two writers never race), holds no secret (so it does not depend on the server's
encryption key, unlike a block), is not removed by the database vacuum, and is part of
the server's database dump, so a restore keeps it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

SUPPRESSION_PREFIX = "suppressed-"
SUPPRESSION_TAG = "suppression"
TAG_LENGTH = 12
_ADDRESS = re.compile(r"[^@\s'\"<>(),;:]+@[^@\s'\"<>(),;:]+\.[A-Za-z0-9-]+")


def normalise(email: str) -> str:
    """The address as the flow keys it (trimmed, lower-cased)."""
    return email.strip().lower()


def address_hash(email: str) -> str:
    """SHA-256 (hex) of the normalised address."""
    return hashlib.sha256(normalise(email).encode()).hexdigest()


def address_tag(email: str) -> str:
    """A short, non-reversible tag of the address for log lines."""
    return address_hash(email)[:TAG_LENGTH]


def redact(text: str) -> str:
    """``text`` with every address in it replaced by ``<address tag>``."""
    return _ADDRESS.sub(lambda match: f"<address {address_tag(match.group(0))}>", text)


def suppression_name(email: str) -> str:
    """The name of the Prefect Variable that suppresses ``email``."""
    return SUPPRESSION_PREFIX + address_hash(email)


def suppression(email: str) -> dict[str, Any] | None:
    """The suppression entry of ``email`` (reason, date), or None."""
    from prefect.variables import Variable  # noqa: PLC0415 - keeps imports light

    value = Variable.get(suppression_name(email), default=None, _sync=True)  # type: ignore[call-arg]
    if value is None:
        return None
    return value if isinstance(value, dict) else {"reason": str(value)}


def suppress(email: str, reason: str) -> bool:
    """Record ``email`` (hashed) as suppressed; False when it already was."""
    from prefect.variables import Variable  # noqa: PLC0415

    if suppression(email) is not None:
        return False
    value = {"reason": reason, "at": datetime.now(UTC).date().isoformat()}
    Variable.set(  # type: ignore[call-arg]
        suppression_name(email), value, tags=[SUPPRESSION_TAG], overwrite=True, _sync=True
    )
    return True
