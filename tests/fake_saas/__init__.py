"""A fake of the parts of the Notion and Resend APIs the signup flow uses, and of
Cloudflare Turnstile's siteverify the door calls (see ``turnstile.py``).

Standard library only (it also runs as a service on a bare Debian host with
``/usr/bin/python3``). One HTTP server answers both APIs on one port: Notion under
``/v1/``, Resend under ``/emails`` and ``/domains``, a Slack-style webhook under
``/services/``, siteverify, and the control endpoints under ``/_fake/`` (state, reset,
faults, config). ``README.md`` beside this file lists every behaviour, fault and setting
with the document it follows.
"""

from .common import (
    DEFAULT_DATA_SOURCE_ID,
    DEFAULT_DATABASE_ID,
    DEFAULT_NOTION_TOKEN,
    DEFAULT_RESEND_API_KEY,
    DEFAULT_RESEND_SENDING_API_KEY,
    ApiError,
)
from .server import FakeSaaS, FakeServer, make_server
from .turnstile import DEFAULT_TURNSTILE_SECRET

__all__ = [
    "DEFAULT_DATABASE_ID",
    "DEFAULT_DATA_SOURCE_ID",
    "DEFAULT_NOTION_TOKEN",
    "DEFAULT_RESEND_API_KEY",
    "DEFAULT_RESEND_SENDING_API_KEY",
    "DEFAULT_TURNSTILE_SECRET",
    "ApiError",
    "FakeSaaS",
    "FakeServer",
    "make_server",
]
