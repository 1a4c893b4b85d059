"""Notion through the official notion-client AsyncClient, pinned to API version 2025-09-03.

Since 2025-09-03 a database is a container of one or more data sources, and rows live in a data
source. People copy database ids from Notion, so the actions take those and look up the data
source; `data_source_id` is accepted too, for databases that have several.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import certifi
import httpx
from notion_client import AsyncClient
from notion_client.errors import (
    HTTPResponseError,
    InvalidPathParameterError,
    RequestTimeoutError,
)
from pydantic import BaseModel, ConfigDict, Field

from connectors import ActionContext, ClientOptions, Connector, Hints
from connectors._http import retry_after_seconds
from connectors.errors import (
    ConnectorError,
    InvalidCredentials,
    InvalidInput,
    MissingScopes,
    NotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from connectors.notion.shapes import DataSource, NotionId, NotionItem, Parent, parent_of, summarize, title_of

connector = Connector.load(__file__)

# Pinned rather than inherited from the SDK, so an SDK upgrade cannot change response shapes.
NOTION_VERSION = "2025-09-03"
# Our own logger: without one the SDK adds a stdout handler to "notion_client" per client.
_sdk_logger = logging.getLogger("connectors.notion.sdk")
# Notion's integration capabilities, declared as the actions' scopes.
READ, UPDATE, INSERT = "read_content", "update_content", "insert_content"
_SHARE_HINT = "share it with the integration in Notion (••• menu → Connections)"


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the CA bundle blocks the event loop for ~0.2 s; a client is opened per action.
    return ssl.create_default_context(cafile=certifi.where())


@connector.client
@asynccontextmanager
async def open_client(credentials: Mapping[str, str], options: ClientOptions) -> AsyncIterator[AsyncClient]:
    # OAuth connections made before `credential_keys` existed hold only `access_token`.
    token = credentials.get("token") or credentials.get("access_token")
    if not token:
        raise InvalidCredentials("the Notion connection holds no token; connect Notion again")
    async with httpx.AsyncClient(transport=options.http_transport, verify=_tls()) as http:
        yield AsyncClient(
            client=http,
            auth=token,
            base_url=options.api_base.rstrip("/"),  # the SDK appends /v1/
            timeout_ms=int(options.timeout * 1000),
            notion_version=NOTION_VERSION,
            retry=False,  # the runtime owns retries; the SDK would repeat a rate-limited page creation
            logger=_sdk_logger,
            # The SDK warns on every failed request; the runtime reports errors once, with the
            # request_id kept in the error's detail.
            log_level=logging.ERROR,
        )


@connector.verifier
async def verify(client: AsyncClient) -> dict[str, Any]:
    """users/me: proves the token works and names the integration's bot and workspace."""
    me = await client.users.me()
    return {"botId": me.get("id"), "workspaceName": (me.get("bot") or {}).get("workspace_name")}


# -- errors ---------------------------------------------------------------------------------------
_PROPERTY_PATTERNS = (
    re.compile(r"^(?P<name>.+?) is not a property that exists"),
    re.compile(r"Could not find property with name or id: (?P<name>.+?)\.?$", re.MULTILINE),
    re.compile(r"^(?P<name>.+?) is expected to be \w+"),
)
_BODY_PATH = re.compile(r"body\.(?P<path>[\w.\[\]]+?) should")


def invalid_field(message: str) -> str | None:
    """The input field a Notion validation message is about, e.g. `properties.Status`."""
    for pattern in _PROPERTY_PATTERNS:
        match = pattern.search(message)
        if match:
            return f"properties.{match.group('name').strip()}"
    match = _BODY_PATH.search(message)
    if match is None:
        return None
    parts = match.group("path").split(".")
    # Keep the property name, drop Notion's type-level tail (properties.Name.title -> properties.Name).
    return ".".join(parts[:2]) if parts[0] in ("properties", "parent", "filter") else parts[0]


@connector.error_mapper
def map_notion_error(exc: BaseException) -> ConnectorError | None:
    mapped = _mapped(exc)
    request_id = getattr(exc, "request_id", None)
    if mapped is not None and request_id:
        mapped.detail = f"Notion request_id {request_id}"  # what Notion support asks for
    return mapped


def _mapped(exc: BaseException) -> ConnectorError | None:
    if isinstance(exc, RequestTimeoutError):
        return UpstreamTimeout("Notion did not answer in time")
    if isinstance(exc, InvalidPathParameterError):
        return InvalidInput("that is not a Notion id")
    if not isinstance(exc, HTTPResponseError):
        return None
    code, status, message = str(getattr(exc.code, "value", exc.code)), exc.status, str(exc)
    if code == "rate_limited" or status == 429:
        wait = retry_after_seconds(exc.headers.get("Retry-After"))
        return RateLimited(f"Notion rate limit reached; retry after {wait:g}s", retry_after=wait)
    if code == "unauthorized":
        return InvalidCredentials("Notion rejected the token (unauthorized); connect Notion again")
    if code == "restricted_resource":
        # Notion does not say which capability is missing; the runtime names the action's.
        return MissingScopes(
            [],
            provider="Notion",
            hint=f" (a capability: enable it in the integration's settings, or {_SHARE_HINT}). "
            f"Notion: {message}",
        )
    if code == "object_not_found":
        hint = "" if "shared" in message else f" It may not be shared with the integration: {_SHARE_HINT}."
        return NotFound(f"Notion: {message}{hint}")
    if code == "validation_error":
        field = invalid_field(message)
        about_properties = field is not None and field.startswith("properties")
        hint = " Check property names and types with notion_get_database." if about_properties else ""
        return InvalidInput(f"Notion rejected the input: {message}{hint}", field=field)
    if code == "invalid_request":  # "This request is not supported": something the caller asked for
        return InvalidInput(f"Notion rejected the request: {message}")
    if code == "gateway_timeout":
        return UpstreamTimeout("Notion timed out answering")
    if code == "conflict_error":  # Notion: a data collision; repeating the request may succeed
        return UpstreamError(f"Notion conflict: {message}", status=status, retryable=True)
    return UpstreamError(f"Notion error {status} ({code})", status=status, retryable=status >= 500)


async def _data_source_id(client: AsyncClient, database_id: str) -> str:
    """The one data source of a database; several need the caller to choose."""
    database = await client.databases.retrieve(database_id=database_id)
    sources: list[dict[str, Any]] = database.get("data_sources") or []
    if len(sources) == 1:
        return str(sources[0]["id"])
    if not sources:
        raise NotFound(f"Notion database {database_id} shows the integration no data source; {_SHARE_HINT}")
    listed = ", ".join(f"{s.get('name') or 'untitled'} ({s['id']})" for s in sources)
    raise InvalidInput(
        f"Notion database {database_id} has several data sources; pass data_source_id, one of: {listed}",
        field="data_source_id",
    )


# -- search ---------------------------------------------------------------------------------------
class SearchFilter(BaseModel):
    value: Literal["page", "database"] = Field(
        description="`page` for pages only, `database` for databases only (returned as their data sources)."
    )
    property: Literal["object"] = Field("object", description="Always `object`, as in Notion's API.")


class SearchInput(BaseModel):
    query: str = Field("", max_length=2000, description="Words to find in titles; empty lists all shared.")
    filter: SearchFilter | None = Field(None, description="Limit results to pages or to databases.")
    page_size: int = Field(10, ge=1, le=100, description="Most results to return in this page.")
    start_cursor: str | None = Field(None, description="`next_cursor` from a previous call, to continue.")


class SearchOutput(BaseModel):
    count: int = Field(description="Number of results in this page.")
    pages: list[NotionItem] = Field(
        description="Matching pages and data sources; for a data source, `parent.id` is its database id."
    )
    has_more: bool = Field(description="True when more results follow.")
    next_cursor: str | None = Field(None, description="Pass as `start_cursor` for the next page.")


@connector.action(Hints(read_only=True), scopes=(READ,))
async def search(ctx: ActionContext[AsyncClient], params: SearchInput) -> SearchOutput:
    """Search the Notion pages and databases shared with the integration, by title.

    Only pages and databases shared with the integration (••• → Connections) are found.
    """
    body: dict[str, Any] = {"page_size": params.page_size, "start_cursor": params.start_cursor}
    if params.query:
        body["query"] = params.query
    if params.filter:
        # Since 2025-09-03 Notion searches data sources where it used to search databases.
        kind = "data_source" if params.filter.value == "database" else "page"
        body["filter"] = {"property": "object", "value": kind}
    response = await ctx.client.search(**body)
    items = [summarize(obj) for obj in response.get("results", [])]
    return SearchOutput(
        count=len(items),
        pages=items,
        has_more=bool(response.get("has_more")),
        next_cursor=response.get("next_cursor"),
    )


# -- databases ------------------------------------------------------------------------------------
class QueryDatabaseInput(BaseModel):
    database_id: NotionId | None = Field(
        None, description="Database id or notion.so link; give this or `data_source_id`."
    )
    data_source_id: NotionId | None = Field(
        None,
        description=(
            "Data source id (the `id` of a data source found by notion_search); needed instead of "
            "database_id only when the database has several data sources."
        ),
    )
    filter: dict[str, Any] | None = Field(
        None,
        description=(
            "Notion filter object, e.g. {'property': 'Status', 'select': {'equals': 'Done'}}; "
            "combine with {'and': [...]} or {'or': [...]}."
        ),
    )
    sorts: list[dict[str, Any]] | None = Field(
        None, description="Notion sort objects, e.g. [{'property': 'Due', 'direction': 'ascending'}]."
    )
    page_size: int = Field(10, ge=1, le=100, description="Most rows to return in this page (1-100).")
    start_cursor: str | None = Field(None, description="`next_cursor` from a previous call, to continue.")


class QueryDatabaseOutput(BaseModel):
    results: list[NotionItem] = Field(description="Matching rows (pages) with their property values.")
    has_more: bool = Field(description="True when more rows follow.")
    next_cursor: str | None = Field(None, description="Pass as `start_cursor` for the next page.")
    data_source_id: str = Field(description="The data source that was queried.")


@connector.action(Hints(read_only=True), scopes=(READ,))
async def query_database(ctx: ActionContext[AsyncClient], params: QueryDatabaseInput) -> QueryDatabaseOutput:
    """List rows of a Notion database, optionally filtered and sorted, one page at a time.

    Use notion_get_database first to learn the property names and types a filter can use.
    """
    if params.data_source_id is None and params.database_id is None:
        raise InvalidInput("give the database_id (or data_source_id) to query", field="database_id")
    source = params.data_source_id or await _data_source_id(ctx.client, str(params.database_id))
    body: dict[str, Any] = {"page_size": params.page_size, "start_cursor": params.start_cursor}
    if params.filter is not None:
        body["filter"] = params.filter
    if params.sorts is not None:
        body["sorts"] = params.sorts
    response = await ctx.client.data_sources.query(data_source_id=source, **body)
    return QueryDatabaseOutput(
        results=[summarize(row) for row in response.get("results", [])],
        has_more=bool(response.get("has_more")),
        next_cursor=response.get("next_cursor"),
        data_source_id=source,
    )


class GetDatabaseInput(BaseModel):
    database_id: NotionId = Field(description="Database id or notion.so link to the database.")


class GetDatabaseOutput(BaseModel):
    id: str = Field(description="Database id.")
    url: str | None = Field(None, description="Link to open it in Notion.")
    title: str = Field(description="Plain-text database title.")
    last_edited_time: str | None = Field(None, description="ISO 8601 time of the last edit.")
    in_trash: bool = Field(False, description="True when the database is in the trash.")
    parent: Parent | None = Field(None, description="Where the database lives.")
    data_sources: list[DataSource] = Field(
        description="The tables in this database (usually one), each with its column schema."
    )


@connector.action(Hints(read_only=True), scopes=(READ,))
async def get_database(ctx: ActionContext[AsyncClient], params: GetDatabaseInput) -> GetDatabaseOutput:
    """Describe a Notion database: its title and the columns (properties) its rows have."""
    database = await ctx.client.databases.retrieve(database_id=params.database_id)
    sources: list[DataSource] = []
    for ref in database.get("data_sources") or []:
        schema = await ctx.client.data_sources.retrieve(data_source_id=ref["id"])
        name = ref.get("name") or title_of(schema)
        sources.append(DataSource(id=str(ref["id"]), name=name, properties=schema.get("properties") or {}))
    item = summarize(database)
    return GetDatabaseOutput(
        id=item.id,
        url=item.url,
        title=item.title,
        last_edited_time=item.last_edited_time,
        in_trash=item.in_trash,
        parent=parent_of(database),
        data_sources=sources,
    )


# -- pages ----------------------------------------------------------------------------------------
class GetPageInput(BaseModel):
    page_id: NotionId = Field(description="Page id or notion.so link to the page.")


@connector.action(Hints(read_only=True), scopes=(READ,))
async def get_page(ctx: ActionContext[AsyncClient], params: GetPageInput) -> NotionItem:
    """Read a Notion page's title and property values (not its body content)."""
    return summarize(await ctx.client.pages.retrieve(page_id=params.page_id))


class PageParent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_id: NotionId | None = Field(None, description="Add the page as a row of this database.")
    data_source_id: NotionId | None = Field(
        None, description="Add the page as a row of this data source (databases with several)."
    )
    page_id: NotionId | None = Field(None, description="Create the page as a sub-page of this page.")
    workspace: Literal[True] | None = Field(
        None,
        description=(
            "True: a private top-level page in the workspace. Only OAuth connections may do this; "
            "an internal integration token needs a page or database parent."
        ),
    )
    type: Literal["database_id", "data_source_id", "page_id", "workspace"] | None = Field(
        None, description="Optional, as in Notion's API; the key given decides."
    )


class CreatePageInput(BaseModel):
    parent: PageParent | None = Field(
        None,
        description="Where the page goes: exactly one of database_id, data_source_id, page_id or workspace.",
    )
    database_id: NotionId | None = Field(
        None, description="Shortcut for parent={'database_id': ...}; give this or `parent`."
    )
    properties: dict[str, Any] = Field(
        default_factory=dict[str, Any],
        description=(
            "Property values by name in Notion's shape, e.g. {'Name': {'title': [{'text': {'content': "
            "'Q3 plan'}}]}, 'Status': {'select': {'name': 'Todo'}}}. Under a page only `title` is allowed."
        ),
    )
    children: list[dict[str, Any]] | None = Field(
        None,
        max_length=100,
        description=(
            "Body content as Notion block objects (at most 100), e.g. {'object': 'block', 'type': "
            "'paragraph', 'paragraph': {'rich_text': [{'text': {'content': 'Hello'}}]}}."
        ),
    )


class CreatePageOutput(BaseModel):
    page_id: str = Field(description="Id of the new page.")
    url: str | None = Field(None, description="Link to open the new page in Notion.")


async def _parent_body(client: AsyncClient, params: CreatePageInput) -> dict[str, Any]:
    if params.parent is not None and params.database_id is not None:
        raise InvalidInput("give either parent or database_id, not both", field="parent")
    if params.parent is None:
        given = {"database_id": params.database_id} if params.database_id else {}
    else:
        ids = params.parent.model_dump(include={"database_id", "data_source_id", "page_id", "workspace"})
        given = {key: value for key, value in ids.items() if value is not None}
    if len(given) != 1:
        raise InvalidInput(
            "say where the page goes: parent with exactly one of database_id, data_source_id, page_id "
            "or workspace",
            field="parent",
        )
    ((kind, value),) = given.items()
    if kind == "database_id":
        kind, value = "data_source_id", await _data_source_id(client, value)
    return {"type": kind, kind: value}


@connector.action(Hints(read_only=False, idempotent=False), scopes=(INSERT,))
async def create_page(ctx: ActionContext[AsyncClient], params: CreatePageInput) -> CreatePageOutput:
    """Create a Notion page: a new row in a database, or a sub-page of a page.

    Use notion_get_database first to learn the database's property names and types.
    """
    body: dict[str, Any] = {"parent": await _parent_body(ctx.client, params), "properties": params.properties}
    if params.children:
        body["children"] = params.children
    page = await ctx.client.pages.create(**body)
    return CreatePageOutput(page_id=str(page["id"]), url=page.get("url"))


class UpdatePageInput(BaseModel):
    page_id: NotionId = Field(description="Page id or notion.so link to the page.")
    properties: dict[str, Any] | None = Field(
        None,
        description=(
            "Property values to set, by name, in Notion's shape, e.g. {'Status': {'select': {'name': "
            "'Done'}}}. Properties left out keep their values."
        ),
    )
    archived: bool | None = Field(
        None, description="True moves the page to Notion's trash; false restores it from the trash."
    )


class UpdatePageOutput(BaseModel):
    page_id: str = Field(description="Id of the updated page.")
    url: str | None = Field(None, description="Link to open the page in Notion.")
    archived: bool = Field(description="True when the page is now in the trash.")


# Destructive: new values replace old ones (not additive) and the API cannot bring them back;
# trashing itself is reversible for 30 days. Idempotent: the same update twice ends the same way.
@connector.action(Hints(read_only=False, destructive=True, idempotent=True), scopes=(UPDATE,))
async def update_page(ctx: ActionContext[AsyncClient], params: UpdatePageInput) -> UpdatePageOutput:
    """Change a Notion page's property values, or move it to the trash (archived=true) or back.

    Values given replace the current ones; properties left out are unchanged.
    """
    if params.properties is None and params.archived is None:
        raise InvalidInput("give properties to change, or archived", field="properties")
    body: dict[str, Any] = {}
    if params.properties is not None:
        body["properties"] = params.properties
    if params.archived is not None:
        body["in_trash"] = params.archived  # `archived` is the deprecated name of `in_trash`
    page = await ctx.client.pages.update(page_id=params.page_id, **body)
    return UpdatePageOutput(page_id=str(page["id"]), url=page.get("url"), archived=summarize(page).in_trash)
