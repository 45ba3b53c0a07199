"""What both fake APIs share: the seeded ids and keys, time helpers, the error type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

DEFAULT_NOTION_TOKEN = "secret_fake_notion_token"
DEFAULT_RESEND_API_KEY = "re_fake_resend_key"
#: A key with "Sending access" only: it may send, nothing else (401 restricted_api_key).
DEFAULT_RESEND_SENDING_API_KEY = "re_fake_sending_only_key"
DEFAULT_DATABASE_ID = "6d1a3e4b-0c2f-4a5e-9b7d-1e2f3a4b5c6d"
DEFAULT_DATA_SOURCE_ID = "9f8e7d6c-5b4a-4392-8170-a1b2c3d4e5f6"


def now() -> datetime:
    return datetime.now(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plain_id(value: str) -> str:
    return value.replace("-", "").lower()


class ApiError(Exception):
    """An error answer of one of the fake APIs."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.body = body
