"""In-memory fake of the Notion API (version 2025-09-03), served over loopback for notion-client.

It answers the way Notion does: JSON error bodies `{"object": "error", "status", "code",
"message"}`, 429 `rate_limited` with Retry-After, a required Notion-Version header, ids accepted
with or without dashes, and the 2025-09-03 data model where a database is a container of data
sources whose rows are pages (so the pre-2025 `/v1/databases/{id}/query` is not served).
Not emulated: blocks (children are counted, not stored), rich-text annotations,
relations/rollups/formulas, and filters beyond `equals`/`contains` with `and`/`or`.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
VERSION = "2025-09-03"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
# Property types the fake can store and filter, with the empty config Notion shows in schemas.
PROPERTY_TYPES = {"title", "rich_text", "select", "status", "number", "checkbox", "date"}
ALL_CAPABILITIES = frozenset({"read", "update", "insert"})


class NotionError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body: JSON = {
            "object": "error",
            "status": status,
            "code": code,
            "message": message,
            "request_id": str(uuid.uuid4()),
        }


def _invalid(message: str) -> NotionError:
    return NotionError(400, "validation_error", message)


@dataclass
class NotionToken:
    """What Notion knows about a token: its bot user, workspace and integration capabilities."""

    bot_id: str
    name: str = "Tendril"
    workspace_name: str = "Acme"
    capabilities: frozenset[str] = ALL_CAPABILITIES
    public: bool = False  # an OAuth (public) integration, which may create workspace-level pages


@dataclass
class _Fault:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict[str, str])


def _rich(text: str) -> list[JSON]:
    return [{"type": "text", "text": {"content": text, "link": None}, "plain_text": text, "href": None}]


def _plain(rich: Any) -> str:
    if not isinstance(rich, list):
        return ""
    return "".join(str(p.get("plain_text") or (p.get("text") or {}).get("content") or "") for p in rich)


def _key(raw: str, what: str) -> str:
    """Notion accepts ids with or without dashes; anything else fails path validation."""
    try:
        return str(uuid.UUID(raw.replace("-", "")))
    except ValueError:
        raise _invalid(
            f'path failed validation: path.{what}_id should be a valid uuid, instead was `"{raw}"`.'
        ) from None


class FakeNotion:
    """Notion workspace state plus a Starlette app serving `/v1/...`."""

    def __init__(self) -> None:
        self.tokens: dict[str, NotionToken] = {}
        self.databases: dict[str, JSON] = {}
        self.data_sources: dict[str, JSON] = {}
        self.pages: dict[str, JSON] = {}
        self.children: dict[str, list[JSON]] = {}
        self.hidden: set[str] = set()  # ids not shared with the integration
        # (endpoint, token, Notion-Version) per request; endpoint names follow the SDK's methods.
        self.calls: list[tuple[str, str | None, str | None]] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self._lock = threading.Lock()

    # --- test controls -------------------------------------------------------

    def add_token(
        self,
        token: str,
        *,
        workspace_name: str = "Acme",
        capabilities: frozenset[str] = ALL_CAPABILITIES,
        public: bool = False,
    ) -> NotionToken:
        """Make `token` valid for an integration with these capabilities (read/update/insert)."""
        info = NotionToken(
            self._new_id(), workspace_name=workspace_name, capabilities=capabilities, public=public
        )
        with self._lock:
            self.tokens[token] = info
        return info

    def add_page(self, title: str, *, parent_page_id: str | None = None) -> str:
        """A standalone page (in the workspace, or under another page); returns its id."""
        parent: JSON = (
            {"type": "page_id", "page_id": parent_page_id}
            if parent_page_id
            else {"type": "workspace", "workspace": True}
        )
        with self._lock:
            return self._store_page(
                parent, {"title": {"id": "title", "type": "title", "title": _rich(title)}}
            )

    def add_database(self, title: str, properties: dict[str, str], *, source_name: str | None = None) -> str:
        """A database with one data source whose columns are `{name: type}`; returns the database id."""
        database_id = self._new_id()
        now = self._now()
        with self._lock:
            self.databases[database_id] = {
                "object": "database",
                "id": database_id,
                "title": _rich(title),
                "description": [],
                "parent": {"type": "workspace", "workspace": True},
                "is_inline": False,
                "in_trash": False,
                "archived": False,
                "data_sources": [],
                "created_time": now,
                "last_edited_time": now,
                "url": self._url(title, database_id),
                "icon": None,
                "cover": None,
            }
        self.add_data_source(database_id, source_name or title, properties)
        return database_id

    def add_data_source(self, database_id: str, name: str, properties: dict[str, str]) -> str:
        """Another table in a database (multi-source databases); returns the data source id."""
        unknown = set(properties.values()) - PROPERTY_TYPES
        assert not unknown, f"the fake does not model property types {unknown}"
        source_id = self._new_id()
        schema = {
            prop: {
                "id": "title" if kind == "title" else f"p{index}",
                "name": prop,
                "type": kind,
                kind: {"options": []} if kind in ("select", "status") else {},
            }
            for index, (prop, kind) in enumerate(properties.items())
        }
        with self._lock:
            database = self.databases[database_id]
            database["data_sources"].append({"id": source_id, "name": name})
            self.data_sources[source_id] = {
                "object": "data_source",
                "id": source_id,
                "title": _rich(name),
                "parent": {"type": "database_id", "database_id": database_id},
                "database_parent": database["parent"],
                "properties": schema,
                "created_time": database["created_time"],
                "last_edited_time": database["last_edited_time"],
                "in_trash": False,
                "archived": False,
            }
        return source_id

    def add_row(self, source_id: str, values: dict[str, Any]) -> str:
        """A row (page) in a data source from plain values, e.g. {"Name": "x", "Done": True}."""
        with self._lock:
            source = self.data_sources[source_id]
            schema: JSON = source["properties"]
            written = {
                name: {schema[name]["type"]: _write_value(schema[name]["type"], v)}
                for name, v in values.items()
            }
            parent = {
                "type": "data_source_id",
                "data_source_id": source_id,
                "database_id": source["parent"]["database_id"],
            }
            return self._store_page(parent, self._properties_for(schema, written))

    def source_of(self, database_id: str) -> str:
        """The (first) data source id of a database."""
        return self.databases[database_id]["data_sources"][0]["id"]

    def hide(self, object_id: str) -> None:
        """Stop sharing an object with the integration: Notion then answers object_not_found."""
        with self._lock:
            self.hidden.add(str(uuid.UUID(object_id)))

    def rate_limit_next(self, endpoint: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `endpoint` (e.g. "search") with 429 + Retry-After."""
        error = NotionError(
            429, "rate_limited", "You have been rate limited. Please try again in a few minutes."
        )
        self._queue(endpoint, _Fault(429, error.body, {"Retry-After": str(retry_after)}), times)

    def fail_next(
        self, endpoint: str, status: int = 500, code: str = "internal_server_error", times: int = 1
    ) -> None:
        """Answer the next `times` calls of `endpoint` with a Notion error (a 5xx by default)."""
        error = NotionError(status, code, "Unexpected error occurred.")
        self._queue(endpoint, _Fault(status, error.body), times)

    def break_next(self, endpoint: str, body: JSON, status: int = 200, times: int = 1) -> None:
        """Answer the next `times` calls of `endpoint` with exactly `body`."""
        self._queue(endpoint, _Fault(status, body), times)

    def endpoint_calls(self, endpoint: str) -> int:
        return sum(1 for name, _, _ in self.calls if name == endpoint)

    def _queue(self, endpoint: str, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.setdefault(endpoint, deque()).extend([fault] * times)

    # --- HTTP ----------------------------------------------------------------

    @cached_property
    def app(self) -> Starlette:
        """The ASGI app; serve it with `run_asgi_on_loopback` and point the SDK's base_url at it."""
        routes = [
            ("/v1/search", "POST", "search"),
            ("/v1/users/me", "GET", "users.me"),
            ("/v1/databases/{id}", "GET", "databases.retrieve"),
            ("/v1/data_sources/{id}", "GET", "data_sources.retrieve"),
            ("/v1/data_sources/{id}/query", "POST", "data_sources.query"),
            ("/v1/pages", "POST", "pages.create"),
            ("/v1/pages/{id}", "GET", "pages.retrieve"),
            ("/v1/pages/{id}", "PATCH", "pages.update"),
        ]
        by_path: dict[str, dict[str, str]] = {}
        for path, method, name in routes:
            by_path.setdefault(path, {})[method] = name

        def endpoint_for(names: dict[str, str]) -> Callable[[Request], Awaitable[JSONResponse]]:
            async def endpoint(request: Request) -> JSONResponse:
                return await self._serve(request, names.get(request.method))

            return endpoint

        methods = ["GET", "POST", "PATCH", "DELETE"]
        served = [Route(path, endpoint_for(names), methods=methods) for path, names in by_path.items()]
        # Anything else gets Notion's own answer for an unknown URL.
        served.append(Route("/{rest:path}", endpoint_for({}), methods=methods))
        return Starlette(routes=served)

    async def _serve(self, request: Request, name: str | None) -> JSONResponse:
        body = await request.body()
        token = _bearer(request.headers.get("authorization"))
        version = request.headers.get("notion-version")
        with self._lock:
            self.calls.append((name or request.url.path, token, version))
            queued = self._faults.get(name or "")
            fault = queued.popleft() if queued else None
            if fault is not None:
                return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
            try:
                if name is None:
                    raise NotionError(400, "invalid_request_url", "Invalid request URL.")
                if not version:
                    raise NotionError(
                        400,
                        "missing_version",
                        "Notion-Version header failed validation: Notion-Version header should be defined, "
                        "instead was `undefined`.",
                    )
                info = self.tokens.get(token or "")
                if info is None:
                    raise NotionError(401, "unauthorized", "API token is invalid.")
                params = json.loads(body) if body else {}
                if not isinstance(params, dict):
                    raise NotionError(400, "invalid_json", "Error parsing JSON body.")
                status, answer = 200, self._handle(name, info, request.path_params.get("id"), params)
            except NotionError as exc:
                status, answer = exc.status, exc.body
            except json.JSONDecodeError:
                status, answer = 400, NotionError(400, "invalid_json", "Error parsing JSON body.").body
            response = JSONResponse(answer, status_code=status)  # serialised while state cannot change
        logger.debug("notion %s -> %s", name, status)
        return response

    # --- API methods (called with the lock held) -----------------------------

    def _handle(self, name: str, info: NotionToken, raw_id: str | None, params: JSON) -> JSON:
        needs = {"pages.create": "insert", "pages.update": "update"}.get(name, "read")
        if needs not in info.capabilities:
            raise NotionError(403, "restricted_resource", "Insufficient permissions for this endpoint.")
        if name == "users.me":
            return self._me(info)
        if name == "search":
            return self._search(params)
        if name == "pages.create":
            return self._create_page(info, params)
        assert raw_id is not None
        if name == "databases.retrieve":
            return dict(self._visible(self.databases, _key(raw_id, "database"), "database"))
        if name == "data_sources.retrieve":
            return dict(self._visible(self.data_sources, _key(raw_id, "data_source"), "data_source"))
        if name == "data_sources.query":
            return self._query(
                self._visible(self.data_sources, _key(raw_id, "data_source"), "data_source"), params
            )
        page = self._visible(self.pages, _key(raw_id, "page"), "page")
        if name == "pages.update":
            return self._update_page(info, page, params)
        return dict(page)

    def _me(self, info: NotionToken) -> JSON:
        return {
            "object": "user",
            "id": info.bot_id,
            "name": info.name,
            "avatar_url": None,
            "type": "bot",
            "bot": {"owner": {"type": "workspace", "workspace": True}, "workspace_name": info.workspace_name},
        }

    def _search(self, params: JSON) -> JSON:
        kinds = {"page", "data_source"}
        spec = params.get("filter")
        if spec is not None:
            value = spec.get("value") if isinstance(spec, dict) else None
            if value not in kinds or spec.get("property") != "object":
                raise _invalid(
                    'body failed validation: body.filter.value should be `"page"` or `"data_source"`, '
                    f"instead was `{json.dumps(value)}`."
                )
            kinds = {value}
        query = str(params.get("query") or "").lower()
        found = [
            obj
            for obj in [*self.pages.values(), *self.data_sources.values()]
            if obj["object"] in kinds
            and obj["id"] not in self.hidden
            and not obj["in_trash"]
            and query in _title(obj).lower()
        ]
        found.sort(key=lambda o: o["last_edited_time"], reverse=True)
        return self._paginate(found, params, "page_or_data_source")

    def _query(self, source: JSON, params: JSON) -> JSON:
        schema: JSON = source["properties"]
        rows = [
            page
            for page in self.pages.values()
            if page["parent"].get("data_source_id") == source["id"] and not page["in_trash"]
        ]
        if params.get("filter") is not None:
            rows = [row for row in rows if _matches(params["filter"], row, schema)]
        for sort in reversed(params.get("sorts") or []):
            rows.sort(
                key=lambda row, s=sort: _sort_key(s, row, schema),
                reverse=sort.get("direction") == "descending",
            )
        return self._paginate(rows, params, "page_or_data_source")

    def _paginate(self, items: list[JSON], params: JSON, kind: str) -> JSON:
        size = params.get("page_size", 100)
        if not isinstance(size, int) or not 1 <= size <= 100:
            raise _invalid(f"body failed validation: body.page_size should be ≤ `100`, instead was `{size}`.")
        start = 0
        cursor = params.get("start_cursor")
        if cursor is not None:
            ids = [item["id"] for item in items]
            if cursor not in ids:
                raise _invalid(
                    f'body failed validation: body.start_cursor should be a valid cursor, was `"{cursor}"`.'
                )
            start = ids.index(cursor)
        page = items[start : start + size]
        more = start + size < len(items)
        return {
            "object": "list",
            "results": [dict(item) for item in page],
            "next_cursor": items[start + size]["id"] if more else None,
            "has_more": more,
            "type": kind,
            kind: {},
        }

    def _create_page(self, info: NotionToken, params: JSON) -> JSON:
        parent = params.get("parent")
        if not isinstance(parent, dict):
            raise _invalid("body failed validation: body.parent should be defined, instead was `undefined`.")
        written = params.get("properties") or {}
        if "data_source_id" in parent or "database_id" in parent:
            source = self._parent_source(parent)
            properties = self._properties_for(source["properties"], written)
            stored_parent = {
                "type": "data_source_id",
                "data_source_id": source["id"],
                "database_id": source["parent"]["database_id"],
            }
        elif "page_id" in parent:
            page = self._visible(self.pages, _key(str(parent["page_id"]), "page"), "page")
            title_schema = {"title": {"id": "title", "name": "title", "type": "title", "title": {}}}
            properties = self._properties_for(title_schema, written)
            stored_parent = {"type": "page_id", "page_id": page["id"]}
        elif parent.get("workspace") is True:
            if not info.public:
                raise _invalid(
                    "Internal integrations can't create workspace-level pages. "
                    "Provide a page_id or data_source_id parent."
                )
            title_schema = {"title": {"id": "title", "name": "title", "type": "title", "title": {}}}
            properties = self._properties_for(title_schema, written)
            stored_parent = {"type": "workspace", "workspace": True}
        else:
            raise _invalid(
                "body failed validation. Fix one:"
                "\nbody.parent.page_id should be defined, instead was `undefined`."
                "\nbody.parent.data_source_id should be defined, instead was `undefined`."
            )
        children = params.get("children") or []
        if len(children) > 100:
            raise _invalid("body failed validation: body.children.length should be ≤ `100`.")
        page_id = self._store_page(stored_parent, properties, created_by=info.bot_id)
        self.children[page_id] = list(children)
        return dict(self.pages[page_id])

    def _parent_source(self, parent: JSON) -> JSON:
        if "data_source_id" in parent:
            return self._visible(
                self.data_sources, _key(str(parent["data_source_id"]), "data_source"), "data_source"
            )
        database = self._visible(self.databases, _key(str(parent["database_id"]), "database"), "database")
        if len(database["data_sources"]) != 1:
            raise _invalid(
                "Databases with multiple data sources are not supported in this API version. "
                "Use a data_source_id parent instead."
            )
        return self.data_sources[database["data_sources"][0]["id"]]

    def _update_page(self, info: NotionToken, page: JSON, params: JSON) -> JSON:
        trash = params.get("in_trash", params.get("archived"))
        if page["in_trash"] and trash is not False and "properties" in params:
            raise _invalid("Can't edit block that is archived. You must unarchive the block before editing.")
        if params.get("properties"):
            source = self.data_sources.get(page["parent"].get("data_source_id", ""))
            schema = source["properties"] if source else {"title": {"id": "title", "type": "title"}}
            page["properties"] = {
                **page["properties"],
                **self._properties_for(schema, params["properties"], fill=False),
            }
        if trash is not None:
            page["in_trash"] = page["archived"] = bool(trash)
        page["last_edited_time"] = self._now()
        page["last_edited_by"] = {"object": "user", "id": info.bot_id}
        return dict(page)

    # --- helpers -------------------------------------------------------------

    def _visible(self, table: dict[str, JSON], object_id: str, what: str) -> JSON:
        obj = table.get(object_id)
        if obj is None or object_id in self.hidden:
            raise NotionError(
                404,
                "object_not_found",
                f"Could not find {what} with ID: {object_id}. "
                "Make sure the relevant pages and databases are shared with your integration.",
            )
        return obj

    def _properties_for(self, schema: JSON, written: Any, *, fill: bool = True) -> JSON:
        """Validate written property values against a schema; return them in Notion's read shape."""
        if not isinstance(written, dict):
            raise _invalid("body failed validation: body.properties should be an object.")
        result: JSON = {}
        for name, value in written.items():
            column = schema.get(name) or next((c for c in schema.values() if c["id"] == name), None)
            if column is None:
                raise _invalid(f"{name} is not a property that exists.")
            kind = column["type"]
            if not isinstance(value, dict) or kind not in value:
                raise _invalid(f"{name} is expected to be {kind}.")
            result[column.get("name", name)] = {
                "id": column["id"],
                "type": kind,
                kind: _read_value(name, kind, value[kind]),
            }
        for name, column in schema.items() if fill else ():  # new pages show every column
            if name not in result:
                empty = [] if column["type"] in ("title", "rich_text") else None
                result[name] = {"id": column["id"], "type": column["type"], column["type"]: empty}
        return result

    def _store_page(self, parent: JSON, properties: JSON, created_by: str | None = None) -> str:
        page_id = self._new_id()
        now = self._now()
        user = {"object": "user", "id": created_by or self._new_id()}
        self.pages[page_id] = {
            "object": "page",
            "id": page_id,
            "created_time": now,
            "last_edited_time": now,
            "created_by": user,
            "last_edited_by": user,
            "cover": None,
            "icon": None,
            "parent": parent,
            "archived": False,
            "in_trash": False,
            "is_locked": False,
            "properties": properties,
            "url": self._url(_title({"properties": properties}), page_id),
            "public_url": None,
        }
        return page_id

    def _new_id(self) -> str:
        return str(uuid.UUID(int=(0x5EED << 112) | next(self._ids)))

    def _now(self) -> str:
        moment = EPOCH + timedelta(minutes=next(self._clock))
        return moment.strftime("%Y-%m-%dT%H:%M:00.000Z")

    @staticmethod
    def _url(title: str, object_id: str) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")
        return f"https://www.notion.so/{slug + '-' if slug else ''}{object_id.replace('-', '')}"


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _title(obj: JSON) -> str:
    if isinstance(obj.get("title"), list):
        return _plain(obj["title"])
    for prop in (obj.get("properties") or {}).values():
        if prop.get("type") == "title":
            return _plain(prop.get("title"))
    return ""


def _write_value(kind: str, value: Any) -> Any:
    """A plain Python value in Notion's write shape for a property type (test setup only)."""
    if kind in ("title", "rich_text"):
        return [{"text": {"content": str(value)}}]
    if kind in ("select", "status"):
        return {"name": str(value)}
    if kind == "date":
        return {"start": str(value)}
    return value


def _read_value(name: str, kind: str, value: Any) -> Any:
    path = f"body.properties.{name}.{kind}"
    if kind in ("title", "rich_text"):
        if not isinstance(value, list):
            raise _invalid(
                f"body failed validation: {path} should be an array, instead was `{json.dumps(value)}`."
            )
        return [_rich(p.get("text", {}).get("content", ""))[0] for p in value if isinstance(p, dict)]
    if kind in ("select", "status"):
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            raise _invalid(f"body failed validation: {path}.name should be a string.")
        return (
            None
            if value is None
            else {"id": value["name"].lower(), "name": value["name"], "color": "default"}
        )
    if kind == "number" and value is not None and not isinstance(value, int | float):
        raise _invalid(f"body failed validation: {path} should be a number or `null`.")
    if kind == "checkbox" and not isinstance(value, bool):
        raise _invalid(f"body failed validation: {path} should be a boolean.")
    if kind == "date" and value is not None and not isinstance(value, dict):
        raise _invalid(f"body failed validation: {path} should be an object or `null`.")
    return value


def _plain_value(prop: JSON) -> Any:
    kind = prop["type"]
    value = prop.get(kind)
    if kind in ("title", "rich_text"):
        return _plain(value)
    if kind in ("select", "status"):
        return value["name"] if value else None
    if kind == "date":
        return value["start"] if value else None
    return value


def _matches(spec: Any, row: JSON, schema: JSON) -> bool:
    if isinstance(spec, dict) and "and" in spec:
        return all(_matches(part, row, schema) for part in spec["and"])
    if isinstance(spec, dict) and "or" in spec:
        return any(_matches(part, row, schema) for part in spec["or"])
    if not isinstance(spec, dict) or "property" not in spec:
        raise _invalid(
            "body failed validation: body.filter.property should be defined, instead was `undefined`."
        )
    name = spec["property"]
    if name not in schema:
        raise _invalid(f"Could not find property with name or id: {name}")
    kind = schema[name]["type"]
    condition = spec.get(kind)
    if not isinstance(condition, dict) or not ({"equals", "contains"} & condition.keys()):
        raise _invalid(f"body failed validation: body.filter.{kind} should be defined for property {name}.")
    actual = _plain_value(row["properties"][name])
    if "equals" in condition:
        return actual == condition["equals"]
    return str(condition["contains"]).lower() in str(actual or "").lower()


def _sort_key(sort: JSON, row: JSON, schema: JSON) -> tuple[bool, Any]:
    if "timestamp" in sort:
        return False, row[sort["timestamp"]]
    name = sort.get("property")
    if name not in schema:
        raise _invalid(f"Could not find sort property with name or id: {name}")
    value = _plain_value(row["properties"][name])
    return value is None, value if value is not None else ""
