"""The fake Notion API (2025-09-03): databases, data sources, query, pages.

A mixin of :class:`fake_saas.server.FakeSaaS`: it uses the state's ``lock``,
``pages``, ``schema`` and ids.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
import uuid
from datetime import datetime
from typing import Any

from .common import ApiError, iso, now, plain_id

#: The seeded "Email Sequence" data source: property name -> type.
DEFAULT_SCHEMA: dict[str, str] = {
    "Name": "title",
    "Email": "email",
    "Business": "rich_text",
    "Segment": "select",
    "Assessment Score": "number",
    "Red Systems": "number",
    "Orange Systems": "number",
    "Yellow Systems": "number",
    "Green Systems": "number",
    "GPS Score": "number",
    "Money Score": "number",
    "Weakest System 1": "rich_text",
    "Weakest System 2": "rich_text",
    "Revenue Leak Total": "number",
    "Sequence Status": "select",
    "Scheduled Email IDs": "rich_text",
    "Sequence Start": "date",
}

#: The property types the fake stores.
PROPERTY_KINDS = ("title", "rich_text", "number", "email", "select", "status", "date")
#: The options a new ``status`` property has in Notion.
DEFAULT_STATUS_OPTIONS = ("Not started", "In progress", "Done")
#: Size limits of property values in requests (Notion, "Request limits").
MAX_TEXT_CONTENT = 2000
MAX_RICH_TEXT_ITEMS = 100
MAX_EMAIL_LENGTH = 200


class NotionApi:
    """Notion's endpoints, on the state of :class:`fake_saas.server.FakeSaaS`."""

    lock: Any
    pages: dict[str, dict[str, Any]]
    page_created: dict[str, float]
    rates: dict[str, float]
    schema: dict[str, dict[str, Any]]
    database_id: str
    data_source_id: str
    created: datetime

    def notion_database(self, database_id: str) -> dict[str, Any]:
        if plain_id(database_id) != plain_id(self.database_id):
            raise ApiError(
                404,
                "object_not_found",
                f"Could not find database with ID: {database_id}. Make sure the relevant "
                "pages and databases are shared with your integration.",
            )
        return {
            "object": "database",
            "id": self.database_id,
            "created_time": iso(self.created),
            "last_edited_time": iso(self.created),
            "title": [_rich_text_item("Email Sequence")],
            "description": [],
            "icon": None,
            "cover": None,
            "parent": {"type": "workspace", "workspace": True},
            "is_inline": False,
            "in_trash": False,
            "is_locked": False,
            "url": f"https://www.notion.so/{plain_id(self.database_id)}",
            "public_url": None,
            "data_sources": [{"id": self.data_source_id, "name": "Email Sequence"}],
        }

    def _check_data_source(self, data_source_id: str) -> None:
        if plain_id(data_source_id) != plain_id(self.data_source_id):
            raise ApiError(
                404, "object_not_found", f"Could not find data source with ID: {data_source_id}."
            )

    def notion_data_source(self, data_source_id: str) -> dict[str, Any]:
        self._check_data_source(data_source_id)
        return {
            "object": "data_source",
            "id": self.data_source_id,
            "created_time": iso(self.created),
            "last_edited_time": iso(self.created),
            "title": [_rich_text_item("Email Sequence")],
            "parent": {"type": "database_id", "database_id": self.database_id},
            "database_parent": {"type": "workspace", "workspace": True},
            "properties": {
                name: {"id": p["id"], "name": name, "type": p["type"], p["type"]: _config(p)}
                for name, p in self.schema.items()
            },
        }

    def notion_query(self, data_source_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_data_source(data_source_id)
        page_size = body.get("page_size", 100)
        if not isinstance(page_size, int) or not 1 <= page_size <= 100:
            raise ApiError(400, "validation_error", "body.page_size should be between 1 and 100")
        with self.lock:
            # A page is found by queries only query_lag seconds after it was created.
            visible = time.monotonic() - self.rates["notion_query_lag_seconds"]
            pages = [
                p
                for p in self.pages.values()
                if not p["in_trash"] and self.page_created.get(p["id"], 0.0) <= visible
            ]
            if body.get("filter"):
                pages = [p for p in pages if self._matches(p, body["filter"])]
            for sort in reversed(body.get("sorts") or []):
                key = sort.get("timestamp") or sort.get("property")
                reverse = sort.get("direction") == "descending"
                pages.sort(key=lambda p, k=key: _sort_key(p, k), reverse=reverse)
            start = 0
            if body.get("start_cursor"):
                ids = [p["id"] for p in pages]
                if body["start_cursor"] not in ids:
                    raise ApiError(400, "validation_error", "start_cursor is invalid")
                start = ids.index(body["start_cursor"])
            chunk = pages[start : start + page_size]
            rest = pages[start + page_size :]
            return {
                "object": "list",
                "results": copy.deepcopy(chunk),
                "next_cursor": rest[0]["id"] if rest else None,
                "has_more": bool(rest),
                "type": "page_or_data_source",
                "page_or_data_source": {},
                "request_id": str(uuid.uuid4()),
            }

    def _matches(self, page: dict[str, Any], spec: dict[str, Any]) -> bool:
        if "and" in spec:
            return all(self._matches(page, s) for s in spec["and"])
        if "or" in spec:
            return any(self._matches(page, s) for s in spec["or"])
        name = spec.get("property")
        if name not in self.schema:
            raise ApiError(
                400, "validation_error", f"Could not find property with name or id: {name}"
            )
        prop = page["properties"][name]
        kind = prop["type"]
        conditions = spec.get(kind)
        if not isinstance(conditions, dict):
            raise ApiError(400, "validation_error", f"body.filter: {name} is a {kind} property")
        value: Any = prop[kind]
        if kind in ("title", "rich_text"):
            value = "".join(item["plain_text"] for item in value)
        elif kind in ("select", "status"):
            value = value["name"] if value else None
        elif kind == "date":
            value = value["start"] if value else None
        for op, expected in conditions.items():
            if op == "equals" and value != expected:
                return False
            if op == "does_not_equal" and value == expected:
                return False
            if op == "contains" and (value is None or str(expected) not in str(value)):
                return False
            if op == "is_empty" and value not in (None, ""):
                return False
            if op == "is_not_empty" and value in (None, ""):
                return False
        return True

    def _property_values(
        self,
        given: Any,
        base: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if not isinstance(given, dict):
            raise ApiError(400, "validation_error", "body.properties should be an object")
        props = (
            copy.deepcopy(base)
            if base
            else {
                name: {"id": p["id"], "type": p["type"], p["type"]: _empty(p["type"])}
                for name, p in self.schema.items()
            }
        )
        for name, value in given.items():
            if name not in self.schema:
                raise ApiError(400, "validation_error", f"{name} is not a property that exists.")
            kind = self.schema[name]["type"]
            if not isinstance(value, dict) or kind not in value:
                raise ApiError(
                    400,
                    "validation_error",
                    f"body.properties.{name}.{kind} should be defined, instead was `undefined`.",
                )
            props[name][kind] = _normalise(name, kind, value[kind], self.schema[name])
        return props

    def notion_create_page(self, body: dict[str, Any]) -> dict[str, Any]:
        parent = body.get("parent") or {}
        kind = parent.get("type")
        if kind == "data_source_id" or (kind is None and "data_source_id" in parent):
            self._check_data_source(str(parent.get("data_source_id", "")))
        elif kind == "database_id" or (kind is None and "database_id" in parent):
            self.notion_database(str(parent.get("database_id", "")))
        else:
            raise ApiError(400, "validation_error", "body.parent.data_source_id should be defined.")
        stamp = iso(now())
        page_id = str(uuid.uuid4())
        user = {"object": "user", "id": "00000000-0000-4000-8000-0000000000b0"}
        page = {
            "object": "page",
            "id": page_id,
            "created_time": stamp,
            "last_edited_time": stamp,
            "created_by": user,
            "last_edited_by": user,
            "cover": None,
            "icon": None,
            "parent": {
                "type": "data_source_id",
                "data_source_id": self.data_source_id,
                "database_id": self.database_id,
            },
            "archived": False,
            "in_trash": False,
            "is_locked": False,
            "properties": self._property_values(body.get("properties") or {}),
            "url": f"https://www.notion.so/{plain_id(page_id)}",
            "public_url": None,
            "request_id": str(uuid.uuid4()),
        }
        with self.lock:
            self.pages[page_id] = page
            self.page_created[page_id] = time.monotonic()
            return copy.deepcopy(page)

    def _page(self, page_id: str) -> dict[str, Any]:
        for pid, page in self.pages.items():
            if plain_id(pid) == plain_id(page_id):
                return page
        raise ApiError(404, "object_not_found", f"Could not find page with ID: {page_id}.")

    def notion_get_page(self, page_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._page(page_id))

    def notion_update_page(self, page_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            page = self._page(page_id)
            restoring = body.get("in_trash", body.get("archived")) is False
            if page["in_trash"] and not restoring:
                raise ApiError(
                    400,
                    "validation_error",
                    "Can't edit block that is archived. You must unarchive the block before "
                    "editing.",
                )
            if "properties" in body:
                page["properties"] = self._property_values(body["properties"], page["properties"])
            for flag in ("archived", "in_trash"):
                if flag in body:
                    page["archived"] = page["in_trash"] = bool(body[flag])
            page["last_edited_time"] = iso(now())
            return copy.deepcopy(page)


def _rich_text_item(content: str) -> dict[str, Any]:
    return {
        "type": "text",
        "text": {"content": content, "link": None},
        "annotations": {
            "bold": False,
            "italic": False,
            "strikethrough": False,
            "underline": False,
            "code": False,
            "color": "default",
        },
        "plain_text": content,
        "href": None,
    }


def _empty(kind: str) -> Any:
    return [] if kind in ("title", "rich_text") else None


def _too_long(where: str, limit: int, length: int) -> ApiError:
    return ApiError(
        400,
        "validation_error",
        f"body failed validation: {where}.length should be ≤ `{limit}`, instead was `{length}`.",
    )


def _config(prop: dict[str, Any]) -> dict[str, Any]:
    """A data source property's configuration (the options of a select or status)."""
    if prop.get("options") is None:
        return {}
    options = [
        {"id": hashlib.sha1(o.encode()).hexdigest()[:8], "name": o, "color": "default"}
        for o in prop["options"]
    ]
    return {"options": options}


def _normalise(name: str, kind: str, value: Any, prop: dict[str, Any]) -> Any:
    where = f"body.properties.{name}.{kind}"

    def bad(expected: str) -> ApiError:
        return ApiError(
            400,
            "validation_error",
            f"{where} should be {expected}, instead was `{value!r}`.",
        )

    if kind in ("title", "rich_text"):
        if not isinstance(value, list):
            raise bad("an array")
        if len(value) > MAX_RICH_TEXT_ITEMS:
            raise _too_long(where, MAX_RICH_TEXT_ITEMS, len(value))
        items = []
        for n, item in enumerate(value):
            content = (item.get("text") or {}).get("content") if isinstance(item, dict) else None
            if not isinstance(content, str):
                raise bad("an array of text objects")
            if len(content) > MAX_TEXT_CONTENT:
                raise _too_long(f"{where}[{n}].text.content", MAX_TEXT_CONTENT, len(content))
            items.append(_rich_text_item(content))
        return items
    if kind == "number":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad("a number or `null`")
        return value
    if kind == "email":
        if value is not None and not isinstance(value, str):
            raise bad("a string or `null`")
        if value is not None and len(value) > MAX_EMAIL_LENGTH:
            raise _too_long(where, MAX_EMAIL_LENGTH, len(value))
        return value
    if kind in ("select", "status"):
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise bad("an object with a `name`")
        option = value["name"]
        # A select gets a new option on write; a status only takes one it has.
        if kind == "status" and option not in (prop.get("options") or ()):
            raise ApiError(
                400,
                "validation_error",
                f"Invalid status option. Status option {option!r} "
                f"does not exist for property {name!r}.",
            )
        return {
            "id": hashlib.sha1(option.encode()).hexdigest()[:8],
            "name": option,
            "color": "default",
        }
    if kind == "date":
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("start"), str):
            raise bad("an object with a `start`")
        try:
            datetime.fromisoformat(value["start"])
        except ValueError as exc:
            raise bad("an ISO 8601 date") from exc
        return {"start": value["start"], "end": value.get("end"), "time_zone": None}
    raise bad("supported")


def _sort_key(page: dict[str, Any], key: str) -> Any:
    if key in ("created_time", "last_edited_time"):
        return page[key]
    prop = page["properties"].get(key) or {}
    value = prop.get(prop.get("type", ""), None)
    return json.dumps(value, sort_keys=True)


NOTION_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/v1/databases/([^/]+)$"), "database"),
    ("GET", re.compile(r"^/v1/data_sources/([^/]+)$"), "data_source"),
    ("POST", re.compile(r"^/v1/data_sources/([^/]+)/query$"), "query"),
    ("POST", re.compile(r"^/v1/pages$"), "create_page"),
    ("GET", re.compile(r"^/v1/pages/([^/]+)$"), "get_page"),
    ("PATCH", re.compile(r"^/v1/pages/([^/]+)$"), "update_page"),
]
