"""Compact, typed views of Notion objects: the raw ones are large and mostly formatting.

Property values and schemas stay in Notion's own open shape (documented per property type at
developers.notion.com/reference/property-value-object), since that is what the agent writes back.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, Field

_TRAILING_ID = re.compile(r"([0-9a-fA-F]{32})$")


def _notion_id(value: object) -> str:
    """Accept a bare id, a dashed UUID or a notion.so link (the id is its last 32 hex digits)."""
    if not isinstance(value, str):
        raise ValueError("expected a Notion id as a string")
    compact = value.strip().split("?")[0].split("#")[0].rstrip("/").replace("-", "")
    match = _TRAILING_ID.search(compact)
    if match is None:
        raise ValueError("expected a Notion id: 32 hex digits, a UUID, or a notion.so link to the page")
    return str(UUID(match.group(1)))


NotionId = Annotated[str, BeforeValidator(_notion_id)]


class Parent(BaseModel):
    type: str = Field(
        description="Kind of parent: `data_source_id`, `database_id`, `page_id`, `block_id` or `workspace`."
    )
    id: str | None = Field(None, description="Id of the parent; null for the workspace.")
    database_id: str | None = Field(
        None, description="For rows of a data source: the database containing that data source."
    )


class NotionItem(BaseModel):
    object: str = Field(description="`page`, or `data_source` (the table of rows inside a database).")
    id: str = Field(description="Notion id of the page or data source.")
    url: str | None = Field(None, description="Link to open it in Notion.")
    title: str = Field(description="Plain-text title; empty when untitled.")
    last_edited_time: str | None = Field(None, description="ISO 8601 time of the last edit.")
    in_trash: bool = Field(False, description="True when it is in the trash (archived).")
    parent: Parent | None = Field(None, description="Where it lives.")
    properties: dict[str, Any] = Field(
        default_factory=dict[str, Any],
        description=(
            "Pages: property values by property name, in Notion's shape, e.g. "
            "{'Status': {'type': 'select', 'select': {'name': 'Done'}}}. "
            "Data sources: the property schema (name -> type and options)."
        ),
    )


class DataSource(BaseModel):
    id: str = Field(description="Data source id; pass as `data_source_id` to query it or add rows.")
    name: str = Field(description="Data source name.")
    properties: dict[str, Any] = Field(
        default_factory=dict[str, Any],
        description=(
            "Column schema by property name in Notion's shape, e.g. "
            "{'Status': {'type': 'select', 'select': {'options': [{'name': 'Done'}]}}}."
        ),
    )


def plain_text(rich_text: object) -> str:
    if not isinstance(rich_text, list):
        return ""
    parts: list[str] = []
    for part in rich_text:
        if isinstance(part, dict):
            text = part.get("plain_text") or (part.get("text") or {}).get("content") or ""
            parts.append(str(text))
    return "".join(parts)


def title_of(obj: dict[str, Any]) -> str:
    # Databases and data sources carry `title`; a page's title is its one `title`-typed property.
    if isinstance(obj.get("title"), list):
        return plain_text(obj["title"])
    for prop in (obj.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return plain_text(prop.get("title"))
    return ""


def parent_of(obj: dict[str, Any]) -> Parent | None:
    raw = obj.get("parent")
    if not isinstance(raw, dict):
        return None
    kind = str(raw.get("type") or "")
    value = raw.get(kind)
    database = raw.get("database_id") if kind != "database_id" else None
    return Parent(
        type=kind,
        id=value if isinstance(value, str) else None,
        database_id=database if isinstance(database, str) else None,
    )


def in_trash(obj: dict[str, Any]) -> bool:
    # `archived` is the pre-2024 name of `in_trash`; older objects may carry only it.
    return bool(obj.get("in_trash", obj.get("archived", False)))


def summarize(obj: dict[str, Any]) -> NotionItem:
    return NotionItem(
        object=str(obj.get("object") or "page"),
        id=str(obj["id"]),
        url=obj.get("url"),
        title=title_of(obj),
        last_edited_time=obj.get("last_edited_time"),
        in_trash=in_trash(obj),
        parent=parent_of(obj),
        properties=obj.get("properties") or {},
    )
