"""File connections as MCP resources, gated exactly like tools: the agent must allow `local_file`
or `gcs`, and only its owner's connections exist for it; plus the agent's pending-jobs resource
and the executions it started (`tendril://executions/{id}`, server/mcp/workflow_tools.py).

URIs: `tendril://files/{connection}` (an uploaded file) and `tendril://gcs/{connection}/{+path}`
(an object under a GCS connection's folder); both take `?offset=&limit=` for a chunk of lines.
Re-uploads, new jobs and executions that end notify `resources/subscribe` sessions (2025-11-25) and
`subscriptions/listen` streams (2026-07-28); app.py wires `notify_*` to the change events, which
reach every replica.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter, ValidationError

from connectors.errors import ConnectorError
from server.core.errors import DomainError
from server.core.files import GCS, LOCAL_FILE, Chunk, FileService, Position, file_uri, gcs_uri
from server.mcp import errors
from server.mcp.caller import Caller, CallerResolver
from server.mcp.errors import RESOURCE_NOT_FOUND
from server.mcp.job_tools import JobTools, pending_uri
from server.mcp.workflow_tools import EXECUTION_PREFIX, WorkflowTools, execution_uri
from storage.repositories import ConnectionRecord

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
FILE_TEMPLATE = "tendril://files/{connection}{?offset,limit}"
GCS_TEMPLATE = "tendril://gcs/{connection}/{+path}{?offset,limit}"
FILE_SLUGS = (LOCAL_FILE, GCS)
_POSITION: TypeAdapter[int] = TypeAdapter(Position)
_T = TypeVar("_T")


def _unknown(uri: str) -> MCPError:
    return MCPError(RESOURCE_NOT_FOUND, f"unknown resource {uri}")


class _Target:
    """A parsed resource URI: which connection, which object (GCS), which chunk."""

    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        connection, _, path = parts.path.lstrip("/").partition("/")
        if parts.scheme != "tendril" or parts.netloc not in ("files", "gcs"):
            raise _unknown(uri)
        try:
            self.connection_id = UUID(connection)
        except ValueError:
            raise _unknown(uri) from None
        self.slug = LOCAL_FILE if parts.netloc == "files" else GCS
        self.path = unquote(path)  # the object's name, as gcs_uri encoded it
        if (self.slug == GCS) != bool(path):
            raise _unknown(uri)
        query = parse_qs(parts.query)
        self.offset = _position(query, "offset")
        self.limit = _position(query, "limit")
        self.base = uri.split("?", 1)[0]


def _position(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values or values[-1] == "":
        return None
    try:
        return _POSITION.validate_strings(values[-1])
    except ValidationError:
        raise MCPError(types.INVALID_PARAMS, f"{name} must be a whole number from 0 to 2^63-1") from None


def _cursor(record_id: str, after: str | None) -> str:
    return base64.urlsafe_b64encode(json.dumps({"from": record_id, "after": after}).encode()).decode()


def _parse_cursor(cursor: str | None) -> tuple[str | None, str | None]:
    if not cursor:
        return None, None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(data["from"]), data.get("after")
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise MCPError(types.INVALID_PARAMS, "invalid cursor") from None


async def _refusals_as_protocol_errors(work: Awaitable[_T]) -> _T:
    try:
        return await work
    except (DomainError, ConnectorError) as error:
        raise errors.protocol_error(error) from None


class ResourceHandlers:
    def __init__(
        self, files: FileService, jobs: JobTools, resolve_caller: CallerResolver, workflows: WorkflowTools
    ) -> None:
        self._files = files
        self._jobs = jobs
        self._workflows = workflows
        self._resolve_caller = resolve_caller
        self.bus = InMemorySubscriptionBus()
        self._listen = ListenHandler(self.bus)
        # Sessions held strongly (the SDK's request context is not what keeps them alive); a session
        # that can no longer be notified is dropped on the next update.
        self._subscribers: dict[str, set[Any]] = {}

    async def _visible(self, caller: Caller) -> list[ConnectionRecord]:
        return await self._files.visible(caller.owner_id, tuple(s for s in FILE_SLUGS if caller.allows(s)))

    async def _target(self, ctx: ServerRequestContext[Any], uri: str) -> tuple[_Target, ConnectionRecord]:
        caller = await self._resolve_caller(ctx)
        target = _Target(uri)
        record = None
        if caller.allows(target.slug):
            record = await self._files.readable(caller.owner_id, target.slug, target.connection_id)
        if record is None:
            raise _unknown(uri)
        return target, record

    # -- listing -------------------------------------------------------------------------------
    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        caller = await self._resolve_caller(ctx)
        start, after = _parse_cursor(params.cursor if params else None)
        resources: list[types.Resource] = []
        if start is None and self._jobs.visible(caller):
            resources.append(self._jobs.resource(caller))
        for record in await self._visible(caller):
            if start is not None and str(record.id) < start:
                continue
            if len(resources) >= PAGE_SIZE:
                return types.ListResourcesResult(
                    resources=resources, next_cursor=_cursor(str(record.id), None)
                )
            if record.connector_slug == LOCAL_FILE:
                resources.append(self._file_resource(record))
                continue
            resume = after if start == str(record.id) else None
            try:
                objects, more = await self._files.list_gcs(
                    record, after=resume, page_size=PAGE_SIZE - len(resources)
                )
            except (DomainError, ConnectorError) as refused:  # one unreadable folder hides only itself
                logger.info("resources/list skips GCS connection %s: %s", record.id, refused)
                continue
            resources += [
                types.Resource(
                    uri=gcs_uri(record.id, o["path"]),
                    name=f"{record.label}/{o['path']}",
                    mime_type=o["mime_type"],
                    size=o["size"],
                    description=f"Object in {record.config['gcs_url']}",
                )
                for o in objects
            ]
            if more is not None:
                return types.ListResourcesResult(
                    resources=resources, next_cursor=_cursor(str(record.id), more)
                )
        return types.ListResourcesResult(resources=resources)

    @staticmethod
    def _file_resource(record: ConnectionRecord) -> types.Resource:
        facts = record.account
        return types.Resource(
            uri=file_uri(record.id),
            name=record.label,
            title=record.config.get("filename") or record.label,
            mime_type=facts.get("mime_type"),
            size=facts.get("file_size"),
            description=f"Uploaded file ({facts.get('total_lines')} lines); add ?offset=&limit= for lines",
        )

    async def list_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        caller = await self._resolve_caller(ctx)
        templates = [self._workflows.template()] if await self._workflows.listed(caller) else []
        if caller.allows(LOCAL_FILE):
            templates.append(
                types.ResourceTemplate(
                    uri_template=FILE_TEMPLATE,
                    name="file-lines",
                    title="Lines of an uploaded file",
                    description="`limit` lines of an uploaded file from line `offset` (0-based).",
                )
            )
        if caller.allows(GCS):
            templates.append(
                types.ResourceTemplate(
                    uri_template=GCS_TEMPLATE,
                    name="gcs-object",
                    title="An object in a GCS folder",
                    description="Any object under a GCS connection's folder; offset/limit read lines.",
                )
            )
        return types.ListResourceTemplatesResult(resource_templates=templates)

    # -- reading -------------------------------------------------------------------------------
    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri.startswith("tendril://jobs/"):
            return await self._jobs.read(await self._own_jobs(ctx, uri))
        if uri.startswith(EXECUTION_PREFIX):
            return await self._workflows.read(await self._resolve_caller(ctx), uri)
        target, record = await self._target(ctx, uri)
        if target.slug == LOCAL_FILE:
            read = self._files.read_local(record, offset=target.offset, limit=target.limit)
        else:
            read = self._files.read_gcs(record, target.path, offset=target.offset, limit=target.limit)
        chunk = await _refusals_as_protocol_errors(read)
        return types.ReadResourceResult(contents=[_contents(uri, chunk)])

    # -- subscriptions ------------------------------------------------------------------------
    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        uri = str(params.uri)
        if uri.startswith("tendril://jobs/"):
            await self._own_jobs(ctx, uri)
            self._subscribers.setdefault(uri, set()).add(ctx.session)
            return types.EmptyResult()
        if uri.startswith(EXECUTION_PREFIX):
            await self._workflows.readable(await self._resolve_caller(ctx), uri)
            self._subscribers.setdefault(uri, set()).add(ctx.session)
            return types.EmptyResult()
        target, _record = await self._target(ctx, uri)
        self._subscribers.setdefault(target.base, set()).add(ctx.session)
        return types.EmptyResult()

    async def watchable(self, ctx: ServerRequestContext[Any], uri: str) -> bool:
        """Whether the caller may hear of changes to `uri`: exactly when it may read it."""
        try:
            if uri.startswith("tendril://jobs/"):
                await self._own_jobs(ctx, uri)
            elif uri.startswith(EXECUTION_PREFIX):
                await self._workflows.readable(await self._resolve_caller(ctx), uri)
            else:
                await self._target(ctx, uri)
        except MCPError:
            return False
        return True

    async def listen(
        self, ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """2026-07-28 `subscriptions/listen`: a resource the caller cannot read is left out of what
        it listens to (the acknowledgement says so), as `resources/subscribe` refuses it."""
        wanted = params.notifications.resource_subscriptions or []
        allowed = [uri for uri in wanted if await self.watchable(ctx, uri)]
        if allowed != wanted:
            notifications = params.notifications.model_copy(update={"resource_subscriptions": allowed})
            params = params.model_copy(update={"notifications": notifications})
        return await self._listen(ctx, params)

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        base = str(params.uri).split("?", 1)[0]
        sessions = self._subscribers.get(base)
        if sessions is not None:
            sessions.discard(ctx.session)
        return types.EmptyResult()

    async def _own_jobs(self, ctx: ServerRequestContext[Any], uri: str) -> Caller:
        """The caller, if `uri` is its own pending-jobs resource."""
        caller = await self._resolve_caller(ctx)
        if not self._jobs.visible(caller) or uri != pending_uri(caller.agent_id):
            raise _unknown(uri)
        return caller

    async def notify_jobs(self, agent_id: UUID) -> None:
        await self._notify(pending_uri(agent_id))

    async def notify_file(self, connection_id: UUID) -> None:
        await self._notify(file_uri(connection_id))

    async def notify_execution(self, execution_id: UUID) -> None:
        uri = execution_uri(execution_id)
        await self._notify(uri)
        self._subscribers.pop(uri, None)  # it ended: nothing more will change

    async def _notify(self, uri: str) -> None:
        for session in list(self._subscribers.get(uri, ())):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a closed session: forget it, keep notifying the others
                logger.debug("could not notify a subscriber of %s", uri, exc_info=True)
                self._subscribers[uri].discard(session)
        await self.bus.publish(ResourceUpdated(uri=uri))

    # -- completions --------------------------------------------------------------------------
    async def complete(
        self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> list[str]:
        ref = params.ref
        if not isinstance(ref, types.ResourceTemplateReference) or ref.uri not in (
            FILE_TEMPLATE,
            GCS_TEMPLATE,
        ):
            return []
        caller = await self._resolve_caller(ctx)
        slug = LOCAL_FILE if ref.uri == FILE_TEMPLATE else GCS
        typed = params.argument.value
        records = [r for r in await self._visible(caller) if r.connector_slug == slug]
        if params.argument.name == "connection":
            return [str(r.id) for r in records if str(r.id).startswith(typed) or r.label.startswith(typed)]
        if params.argument.name == "path" and slug == GCS:
            chosen = (params.context.arguments or {}).get("connection") if params.context else None
            matches: list[str] = []
            for record in records:
                if chosen and str(record.id) != chosen:
                    continue
                objects, _more = await _refusals_as_protocol_errors(
                    self._files.list_gcs(record, page_size=1000)
                )
                matches += [o["path"] for o in objects if o["path"].startswith(typed)]
            return matches
        return []


def _contents(uri: str, chunk: Chunk) -> types.TextResourceContents | types.BlobResourceContents:
    if chunk.text is not None:
        return types.TextResourceContents(uri=uri, mime_type=chunk.mime_type, text=chunk.text)
    return types.BlobResourceContents(uri=uri, mime_type=chunk.mime_type, blob=chunk.content)
