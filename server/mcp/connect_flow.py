"""When a tool needs a connection the user has not made yet (or must make again).

Tendril prepares a pending connection and answers according to what the client can do:

- 2025-11-25 with URL elicitation: error -32042 whose elicitation points at the connect page, then
  `notifications/elicitation/complete` once the user has finished, so the client retries;
- 2026-07-28 with URL elicitation: an `InputRequiredResult` with a URL input request and a sealed
  `requestState`; the client's retry runs the call;
- anyone else: an `isError` result naming the link, and `tendril_wait_for_connection` to block until
  the user has finished.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID, uuid4

import anyio
import anyio.abc
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors import Action, Catalog, Hints
from connectors.errors import InvalidInput, NotConnected
from server.core.connections import Connections
from server.core.links import Links
from server.core.waiters import ConnectionWaiters
from server.mcp import definitions, errors
from server.mcp.caller import Caller
from storage.repositories import ConnectionRecord, ConnectionStatus

logger = logging.getLogger(__name__)

WAIT_TOOL = "tendril_wait_for_connection"
WAIT_MAX_SECONDS = 60
# A 2026-07-28 client retries as soon as the user has agreed to open the link, usually before they
# have finished there: the retry waits this long for the connection before answering it is missing.
RESUME_GRACE_SECONDS = 60.0
# How long this process watches the database for a connection it sent a URL elicitation about, to
# notify the client when another replica (or, for `tendril mcp`, the web server) completes it.
ELICITATION_WATCH_SECONDS = 15 * 60.0
BACKGROUND = "tendril.background"  # lifespan-context key of the task group for watchers

_CONNECT_INPUT = "connect"  # the key of the URL request in an InputRequiredResult
_STATE_PREFIX = "connect:"
_BAD_STATE = "Invalid or expired requestState"
# Handshake-era versions that define URL elicitation and error -32042.
_URL_ELICITATION_HANDSHAKE_VERSIONS = frozenset({"2025-11-25"})
_UNKNOWN_CONNECTION = (
    "No connection with that id is available to this agent. "
    "Use the connectionId from the not_connected error of the tool you called."
)


class WaitForConnectionInput(BaseModel):
    model_config = ConfigDict(extra="forbid", title="WaitForConnectionInput")

    connection_id: str = Field(
        description="The connectionId from the not_connected error of the tool that needs the connection."
    )
    timeout_seconds: int = Field(
        default=WAIT_MAX_SECONDS,
        ge=1,
        le=WAIT_MAX_SECONDS,
        description=f"How long to wait at most (1-{WAIT_MAX_SECONDS}); call again to keep waiting.",
    )


_WAIT_RESULT_FIELDS = ["connectionId", "status", "connected"]
_WAIT_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "connectionId": {"type": "string", "description": "The connection waited for."},
        "status": {
            "type": "string",
            "enum": [ConnectionStatus.ACTIVE, ConnectionStatus.PENDING, ConnectionStatus.NEEDS_REAUTH],
            "description": "The connection's status when the wait ended.",
        },
        "connected": {
            "type": "boolean",
            "description": "True when the connection is active: retry the original tool call now.",
        },
    },
    "required": _WAIT_RESULT_FIELDS,
}
WAIT_TOOL_DEFINITION = definitions.tool(
    WAIT_TOOL,
    "Tendril: wait for a connection",
    "Wait until the user has finished connecting an account. After a tool answered not_connected "
    "and you showed the user its connect link, call this with that error's connectionId: it returns "
    "as soon as the connection is active (connected=true; then retry the original call), or after "
    f"timeout_seconds (at most {WAIT_MAX_SECONDS}) with connected=false; call it again to keep waiting.",
    input_schema=definitions.schema(WaitForConnectionInput),
    output=definitions.with_error(_WAIT_RESULT_SCHEMA),
    hints=Hints(read_only=True, open_world=False),
)


def is_modern(ctx: ServerRequestContext[Any]) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def _accepts_url_elicitation(ctx: ServerRequestContext[Any]) -> bool:
    """The client declared URL-mode elicitation (at initialize, or in this request's _meta)."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.elicitation is None or caps.elicitation.url is None:
        return False
    return is_modern(ctx) or ctx.protocol_version in _URL_ELICITATION_HANDSHAKE_VERSIONS


def not_connected_result(needed: NotConnected) -> types.CallToolResult:
    message = (
        f"{needed.message} To wait until they have, call {WAIT_TOOL} with "
        f'connection_id "{needed.connection_id}".'
    )
    return errors.tool_error(message, {**needed.facts(), "message": message})


class ConnectFlow:
    def __init__(
        self, connections: Connections, catalog: Catalog, waiters: ConnectionWaiters, links: Links
    ) -> None:
        self._connections = connections
        self._catalog = catalog
        self._waiters = waiters
        self._links = links
        self._watching: set[UUID] = set()

    # -- asking ------------------------------------------------------------------------------------
    def ask(
        self,
        ctx: ServerRequestContext[Any],
        caller: Caller,
        connection: ConnectionRecord,
        needed: NotConnected,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Send the user to the connect page the way this client understands, or say it in-band."""
        if not _accepts_url_elicitation(ctx):
            return not_connected_result(needed)
        message = self._elicitation_message(connection)
        if is_modern(ctx):
            # An InputRequiredResult must never reach a 2025 client (it answers -32603 there).
            url_request = types.ElicitRequestURLParams(message=message, url=needed.connect_url)
            return types.InputRequiredResult(
                input_requests={_CONNECT_INPUT: types.ElicitRequest(params=url_request)},
                request_state=f"{_STATE_PREFIX}{connection.id}",  # sealed by RequestStateBoundary
            )
        elicitation_id = str(uuid4())
        session = ctx.session

        async def notify() -> None:
            # No related request: it goes out on the session's standalone (GET) stream.
            await session.send_elicit_complete(elicitation_id)

        self._waiters.elicitation_sent(connection.id, elicitation_id, notify)
        self._watch(ctx, caller, connection.id)
        raise UrlElicitationRequiredError(
            [
                types.ElicitRequestURLParams(
                    message=message, url=needed.connect_url, elicitation_id=elicitation_id
                )
            ],
            message=needed.message,
        )

    def _elicitation_message(self, connection: ConnectionRecord) -> str:
        connector = self._catalog[connection.connector_slug]
        name = connector.spec.name
        if connection.status == ConnectionStatus.PENDING:
            why = f"This needs your {name} account, which is not connected to Tendril yet"
        else:
            why = f"Your {name} connection needs to be connected again"
        if connection.auth_method == "oauth":
            how = f"sign in to {name} and approve access"
        else:
            fields = [f.label for f in connector.spec.credential_fields if f.required]
            how = f"enter the {' and '.join(fields) or 'credentials'} for {name} in Tendril"
        return (
            f"{why} (connection '{connection.label}'). "
            f"Open the link to {how}; the call continues once you are done."
        )

    # -- a 2026-07-28 retry ------------------------------------------------------------------------
    @staticmethod
    def resumed_connection_id(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> UUID | None:
        """The connection a 2026-07-28 retry comes back for, from the requestState Tendril minted.

        The RequestStateBoundary middleware has already verified the seal, expiry, audience, the
        agent and the tool call it was issued for; this only reads what Tendril put in.
        """
        if not is_modern(ctx) or params.request_state is None:
            return None
        state = params.request_state
        try:
            if not state.startswith(_STATE_PREFIX):
                raise ValueError(state)
            return UUID(state.removeprefix(_STATE_PREFIX))
        except ValueError:
            logger.warning("sealed requestState of unknown shape on tools/call %s", params.name)
            raise MCPError(types.INVALID_PARAMS, _BAD_STATE) from None

    async def resume(
        self, caller: Caller, action: Action, connection_id: UUID, params: types.CallToolRequestParams
    ) -> ConnectionRecord | types.CallToolResult | None:
        """The connection to run on, the answer to give, or None to pick afresh."""
        response = (params.input_responses or {}).get(_CONNECT_INPUT)
        answer = response.action if isinstance(response, types.ElicitResult) else None
        connection = await self.owned(caller, connection_id)
        if connection is None or connection.connector_slug != action.connector_slug:
            return None  # revoked meanwhile: the normal path answers (in-band, no second request)
        if answer in ("decline", "cancel"):
            name = self._catalog[connection.connector_slug].spec.name
            url = self._links.connect_page(connection.id)
            message = (
                f"The user declined to connect {name} (connection '{connection.label}'), so the call "
                f"was not made. If they change their mind, they can open {url} and you can retry."
            )
            facts = {"code": "connection_declined", "connectUrl": url, "connectionId": str(connection.id)}
            return errors.tool_error(message, {**facts, "message": message})
        if connection.status != ConnectionStatus.ACTIVE and answer == "accept":
            # "accept" means the user agreed to open the link; give them time to finish there.
            await self._waiters.wait(
                connection.id, RESUME_GRACE_SECONDS, self._is_active(caller, connection.id)
            )
            connection = await self.owned(caller, connection_id)
        return connection

    # -- watching for another process to complete it ------------------------------------------------
    def _watch(self, ctx: ServerRequestContext[Any], caller: Caller, connection_id: UUID) -> None:
        """Notify this process's elicited clients when the database says the connection is active."""
        lifespan = ctx.lifespan_context
        background = lifespan.get(BACKGROUND) if isinstance(lifespan, Mapping) else None
        if not isinstance(background, anyio.abc.TaskGroup) or connection_id in self._watching:
            return
        self._watching.add(connection_id)
        background.start_soon(self._watch_connection, caller, connection_id)

    async def _watch_connection(self, caller: Caller, connection_id: UUID) -> None:
        try:
            if await self._waiters.wait(
                connection_id, ELICITATION_WATCH_SECONDS, self._is_active(caller, connection_id)
            ):
                await self._waiters.connected(connection_id)  # a no-op when this process already did it
            else:
                self._waiters.forget(connection_id)  # nobody finished: release the sessions kept for it
        except Exception:
            logger.warning("watching connection %s for its elicitation failed", connection_id, exc_info=True)
        finally:
            self._watching.discard(connection_id)

    # -- tendril_wait_for_connection ------------------------------------------------------------------
    async def wait_tool(self, caller: Caller, arguments: Mapping[str, Any]) -> types.CallToolResult:
        try:
            request = WaitForConnectionInput.model_validate(arguments)
        except ValidationError as exc:
            return errors.tool_failure(InvalidInput.from_validation(exc), WAIT_TOOL)
        connection = await self.owned(caller, request.connection_id)
        if connection is not None:
            await self._waiters.wait(
                connection.id, request.timeout_seconds, self._is_active(caller, connection.id)
            )
            connection = await self.owned(caller, connection.id)  # revoked meanwhile?
        if connection is None:
            # Identical for an id that does not exist, another owner's, and a connector not allowed.
            return errors.tool_error(
                _UNKNOWN_CONNECTION, {"code": "not_found", "message": _UNKNOWN_CONNECTION}
            )
        return errors.tool_success(
            {
                "connectionId": str(connection.id),
                "status": connection.status,
                "connected": connection.status == ConnectionStatus.ACTIVE,
            }
        )

    async def owned(self, caller: Caller, connection_id: str | UUID) -> ConnectionRecord | None:
        """The caller's owner's live connection, if its connector is one this agent may use."""
        try:
            parsed = connection_id if isinstance(connection_id, UUID) else UUID(connection_id)
        except ValueError:
            return None
        record = await self._connections.find(caller.owner_id, parsed)
        if (
            record is None
            or record.status == ConnectionStatus.REVOKED
            or not caller.allows(record.connector_slug)
        ):
            return None
        return record

    def _is_active(self, caller: Caller, connection_id: UUID) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            record = await self._connections.find(caller.owner_id, connection_id)
            return record is not None and record.status == ConnectionStatus.ACTIVE

        return check
