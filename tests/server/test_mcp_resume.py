"""A tool call that needs a connection: the user connects, and the call resumes.

Real SDK clients over real Streamable HTTP (and one over stdio), on SQLite and PostgreSQL:
- 2025-11-25 with URL elicitation: -32042 naming the connect page, then
  `notifications/elicitation/complete`, then the retry in the same session succeeds;
- 2026-07-28 with URL elicitation: `InputRequiredResult`, the client's retry succeeds;
- any other client: an isError result, and `tendril_wait_for_connection` to block until connected.

How the user completes a connection is a parameter (`Flow.complete`), so the OAuth connectors can
reuse every test here with a browser-driven step.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError

from clients import TendrilClient
from server.mcp import connect_flow
from server.mcp.connect_flow import WAIT_TOOL
from server.settings import Settings
from tests.conftest import TELEGRAM_TOKEN, Fakes, LiveTendril, Tendril, _bootstrap_owner, child_env

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
STEP_SECONDS = 20  # bound on any single step that waits for the other side


# -- how a flow is driven ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """A connection a tool call asked the user to complete, and who can complete it."""

    owner: TendrilClient
    connection_id: str
    connect_url: str


@dataclass(frozen=True)
class Flow:
    connector: str
    name: str  # the connector's display name, which the user is shown
    tool: str
    arguments: dict[str, Any]
    complete: Callable[[Pending], Awaitable[None]]  # what the user does on the connect page
    sent: Callable[[Fakes], list[dict[str, Any]]]  # what reached the provider, to count calls
    invalidate: Callable[[Fakes], None]  # the provider stops accepting the stored credential
    restore: Callable[[Fakes], None]  # ...and accepts the user's credential again


async def submit_telegram_token(pending: Pending) -> None:
    # The api_key connect page is a form posting the credential; this is that submission.
    connection = await pending.owner.submit_credentials(pending.connection_id, {"bot_token": TELEGRAM_TOKEN})
    assert connection.status == "active"


def revoke_telegram_token(fakes: Fakes) -> None:
    del fakes.telegram.bots[TELEGRAM_TOKEN]


def restore_telegram_token(fakes: Fakes) -> None:
    fakes.telegram.add_bot(TELEGRAM_TOKEN)


TELEGRAM = Flow(
    connector="telegram",
    name="Telegram",
    tool="telegram_send_message",
    arguments={"chat_id": 123456789, "text": "sent once connected"},
    complete=submit_telegram_token,
    sent=lambda fakes: fakes.telegram.messages,
    invalidate=revoke_telegram_token,
    restore=restore_telegram_token,
)
FLOWS = [pytest.param(TELEGRAM, id="telegram-api-key")]


def pending_from_url(owner: TendrilClient, url: str) -> Pending:
    return Pending(owner, url.rstrip("/").rsplit("/", 1)[1], url)


def assert_sent_once(flow: Flow, fakes: Fakes, result: types.CallToolResult) -> None:
    assert result.is_error is False, result.content
    assert result.structured_content is not None and result.structured_content["status"] == "sent"
    [sent] = flow.sent(fakes)
    assert sent["text"] == flow.arguments["text"]


def error_of(result: types.CallToolResult) -> dict[str, Any]:
    assert result.is_error is True
    assert result.structured_content is not None
    return result.structured_content["error"]


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


# -- MCP clients -------------------------------------------------------------------------------------
@asynccontextmanager
async def mcp_session(
    live: LiveTendril, agent_key: str, *, mode: str = "legacy", **options: Any
) -> AsyncIterator[Client]:
    """The SDK client with any of its callbacks; mode "legacy" is 2025-11-25, MODERN is 2026-07-28."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent_key}"}, timeout=30) as http:
        transport = streamable_http_client(f"{live.url}/mcp", http_client=http)
        async with Client(transport, mode=mode, cache=None, **options) as client:
            yield client


async def only_url_elicitations(
    ctx: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult:
    """Declares `elicitation: {form, url}`; on 2025-11-25 Tendril answers -32042 and never calls this."""
    raise AssertionError(f"unexpected elicitation/create: {params}")


class CompletionInbox:
    """Collects `notifications/elicitation/complete` as a 2025-11-25 host would."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._events: dict[str, anyio.Event] = {}

    def event(self, elicitation_id: str) -> anyio.Event:
        return self._events.setdefault(elicitation_id, anyio.Event())

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            self.received.append(message.params.elicitation_id)
            self.event(message.params.elicitation_id).set()


async def call_expecting_elicitation(mcp: Client, flow: Flow) -> UrlElicitationRequiredError:
    with pytest.raises(MCPError) as raised:
        await mcp.call_tool(flow.tool, flow.arguments)
    assert raised.value.error.code == types.URL_ELICITATION_REQUIRED
    return UrlElicitationRequiredError.from_error(raised.value.error)


# -- 2025-11-25: -32042 and notifications/elicitation/complete ----------------------------------------
@pytest.mark.parametrize("flow", FLOWS)
async def test_2025_client_is_sent_to_the_connect_page_then_told_to_retry(
    live_tendril: LiveTendril, fakes: Fakes, flow: Flow
) -> None:
    inbox = CompletionInbox()
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("elicited", [flow.connector])
        async with mcp_session(
            live_tendril, agent.api_key, elicitation_callback=only_url_elicitations, message_handler=inbox
        ) as mcp:
            assert mcp.protocol_version == "2025-11-25"
            first = await call_expecting_elicitation(mcp, flow)
            second = await call_expecting_elicitation(mcp, flow)  # asking again reuses the connection
            [pending] = await owner.connections()
            [elicitation] = first.elicitations
            assert (pending.status, pending.connector_slug) == ("pending", flow.connector)
            assert pending.connect_url is not None
            assert elicitation.url == pending.connect_url
            assert elicitation.url.endswith(f"/connect/{pending.id}")
            assert flow.name in elicitation.message and f"'{pending.label}'" in elicitation.message
            assert "Open the link" in elicitation.message
            assert pending.connect_url in first.message  # for hosts that only show the error text
            [again] = second.elicitations
            assert again.url == elicitation.url
            ids = [elicitation.elicitation_id, again.elicitation_id]
            assert all(ids) and ids[0] != ids[1] and all(uuid.UUID(str(i)) for i in ids)
            assert flow.sent(fakes) == []

            await flow.complete(Pending(owner, pending.id, pending.connect_url))
            with anyio.fail_after(STEP_SECONDS):
                for elicitation_id in ids:
                    await inbox.event(str(elicitation_id)).wait()
            result = await mcp.call_tool(flow.tool, flow.arguments)  # same session
    assert_sent_once(flow, fakes, result)
    assert sorted(inbox.received) == sorted(str(i) for i in ids)  # each once


@pytest.mark.parametrize("flow", FLOWS)
async def test_2025_client_is_sent_to_reauthorize_a_connection_the_provider_refuses(
    live_tendril: LiveTendril, fakes: Fakes, flow: Flow
) -> None:
    inbox = CompletionInbox()
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("reauth", [flow.connector])
        started = await owner.create_connection(flow.connector)
        await flow.complete(Pending(owner, started.connection.id, str(started.connection.connect_url)))
        flow.invalidate(fakes)
        async with mcp_session(
            live_tendril, agent.api_key, elicitation_callback=only_url_elicitations, message_handler=inbox
        ) as mcp:
            required = await call_expecting_elicitation(mcp, flow)
            [elicitation] = required.elicitations
            connection = await owner.connection(started.connection.id)
            assert connection.status == "needs_reauth"
            assert elicitation.url == connection.connect_url  # the same connection, not a new one
            assert "connected again" in elicitation.message

            flow.restore(fakes)
            await flow.complete(Pending(owner, connection.id, elicitation.url))
            with anyio.fail_after(STEP_SECONDS):
                await inbox.event(str(elicitation.elicitation_id)).wait()
            result = await mcp.call_tool(flow.tool, flow.arguments)
    assert_sent_once(flow, fakes, result)


async def test_stdio_2025_client_is_told_when_the_web_server_completes_the_connection(
    tendril: Tendril, settings: Settings, fakes: Fakes
) -> None:
    """`tendril mcp` is another process than the one the user connects through: it watches the database."""
    flow = TELEGRAM
    owner_record = await tendril.new_owner()
    owner = tendril.client(owner_record.api_key)
    agent = await owner.create_agent("desktop", [flow.connector])
    inbox = CompletionInbox()
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server.cli", "mcp"],
        env=child_env(settings, TENDRIL_AGENT_KEY=agent.api_key),
    )
    async with Client(
        server, mode="legacy", cache=None, elicitation_callback=only_url_elicitations, message_handler=inbox
    ) as mcp:
        required = await call_expecting_elicitation(mcp, flow)
        [elicitation] = required.elicitations
        await flow.complete(pending_from_url(owner, elicitation.url))
        with anyio.fail_after(STEP_SECONDS):
            await inbox.event(str(elicitation.elicitation_id)).wait()
        result = await mcp.call_tool(flow.tool, flow.arguments)
    assert_sent_once(flow, fakes, result)


# -- 2026-07-28: InputRequiredResult and the retry ---------------------------------------------------
@pytest.mark.parametrize("flow", FLOWS)
async def test_2026_client_connects_inside_the_url_request_and_the_call_completes(
    live_tendril: LiveTendril, fakes: Fakes, flow: Flow
) -> None:
    asked: list[types.ElicitRequestURLParams] = []
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("modern", [flow.connector])

        async def connect_then_accept(
            ctx: ClientRequestContext, params: types.ElicitRequestParams
        ) -> types.ElicitResult:
            assert isinstance(params, types.ElicitRequestURLParams)
            asked.append(params)
            await flow.complete(pending_from_url(owner, params.url))
            return types.ElicitResult(action="accept")

        async with mcp_session(
            live_tendril, agent.api_key, mode=MODERN, elicitation_callback=connect_then_accept
        ) as mcp:
            assert mcp.protocol_version == MODERN
            with anyio.fail_after(STEP_SECONDS):
                result = await mcp.call_tool(flow.tool, flow.arguments)  # one call, retried by the SDK
        [connection] = await owner.connections()
    assert_sent_once(flow, fakes, result)
    [params] = asked
    assert params.url.endswith(f"/connect/{connection.id}")  # (an active one lists no connectUrl)
    assert params.elicitation_id is None  # gone in 2026-07-28
    assert flow.name in params.message and f"'{connection.label}'" in params.message
    assert connection.status == "active"


@pytest.mark.parametrize("answer", ["decline", "cancel"])
@pytest.mark.parametrize("flow", FLOWS)
async def test_2026_client_whose_user_declines_gets_an_error_result(
    live_tendril: LiveTendril, fakes: Fakes, flow: Flow, answer: str
) -> None:
    asked: list[types.ElicitRequestParams] = []

    async def refuse(ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action=answer)  # type: ignore[arg-type]

    async with live_tendril.client() as owner:
        agent = await owner.create_agent("declined", [flow.connector])
        async with mcp_session(live_tendril, agent.api_key, mode=MODERN, elicitation_callback=refuse) as mcp:
            with anyio.fail_after(STEP_SECONDS):
                result = await mcp.call_tool(flow.tool, flow.arguments)
        [pending] = await owner.connections()
    error = error_of(result)
    assert error["code"] == "connection_declined"
    assert error["connectionId"] == pending.id and error["connectUrl"] == pending.connect_url
    assert "declined" in text_of(result) and error["message"] == text_of(result)
    assert len(asked) == 1 and pending.status == "pending"
    assert flow.sent(fakes) == []


@pytest.mark.parametrize("flow", FLOWS)
async def test_2026_retry_without_the_connection_made_answers_in_band_instead_of_asking_again(
    live_tendril: LiveTendril, fakes: Fakes, flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect_flow, "RESUME_GRACE_SECONDS", 0.5)
    asked: list[types.ElicitRequestParams] = []

    async def accept_but_never_finish(
        ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept")

    async with live_tendril.client() as owner:
        agent = await owner.create_agent("wanderer", [flow.connector])
        async with mcp_session(
            live_tendril, agent.api_key, mode=MODERN, elicitation_callback=accept_but_never_finish
        ) as mcp:
            with anyio.fail_after(STEP_SECONDS):
                result = await mcp.call_tool(flow.tool, flow.arguments)
        [pending] = await owner.connections()
    error = error_of(result)
    assert (error["code"], error["connectionId"]) == ("not_connected", pending.id)
    assert len(asked) == 1


@pytest.mark.parametrize("flow", FLOWS)
async def test_2026_request_state_is_sealed_and_bound_to_the_call_and_the_agent(
    live_tendril: LiveTendril, fakes: Fakes, flow: Flow
) -> None:
    accepted: types.InputResponses = {"connect": types.ElicitResult(action="accept")}
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("sealed", [flow.connector])
        sibling = await owner.create_agent("sibling", [flow.connector])
        async with mcp_session(
            live_tendril, agent.api_key, mode=MODERN, elicitation_callback=only_url_elicitations
        ) as mcp:
            first = await mcp.session.call_tool(flow.tool, flow.arguments, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult)
            state = first.request_state
            [pending] = await owner.connections()
            assert state is not None and pending.id not in state and "connect" not in state  # opaque

            middle = len(state) // 2
            tampered = state[:middle] + ("A" if state[middle] != "A" else "B") + state[middle + 1 :]
            other_arguments = {**flow.arguments, "text": "something else"}
            refusals = [
                (flow.arguments, tampered),
                (flow.arguments, "v1.forged"),
                (flow.arguments, f"connect:{pending.id}"),  # the plaintext Tendril seals
                (other_arguments, state),  # bound to the call it was issued for
            ]
            for arguments, bad_state in refusals:
                with pytest.raises(MCPError, match="Invalid or expired requestState") as raised:
                    await mcp.session.call_tool(
                        flow.tool, arguments, input_responses=accepted, request_state=bad_state
                    )
                assert raised.value.error.code == types.INVALID_PARAMS
        async with mcp_session(live_tendril, sibling.api_key, mode=MODERN) as other:
            with pytest.raises(MCPError, match="Invalid or expired requestState"):  # bound to the agent
                await other.session.call_tool(
                    flow.tool, flow.arguments, input_responses=accepted, request_state=state
                )

        assert flow.sent(fakes) == []
        await flow.complete(Pending(owner, pending.id, str(pending.connect_url)))
        async with mcp_session(live_tendril, agent.api_key, mode=MODERN) as mcp:
            resumed = await mcp.session.call_tool(
                flow.tool, flow.arguments, input_responses=accepted, request_state=state
            )
    assert isinstance(resumed, types.CallToolResult)
    assert_sent_once(flow, fakes, resumed)


# -- every other client: an error result, and tendril_wait_for_connection ----------------------------
@pytest.mark.parametrize("mode", ["legacy", MODERN])
@pytest.mark.parametrize("flow", FLOWS)
async def test_plain_client_waits_for_the_connection_then_retries(
    live_tendril: LiveTendril, fakes: Fakes, flow: Flow, mode: str
) -> None:
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("patient", [flow.connector])
        async with mcp_session(live_tendril, agent.api_key, mode=mode) as mcp:
            tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
            waiter = tools[WAIT_TOOL]
            # Tendril's own tools follow the connector's, the waiter first.
            connector_tools = [name for name in tools if not name.startswith("tendril_")]
            assert list(tools)[len(connector_tools)] == WAIT_TOOL
            assert waiter.annotations is not None
            assert waiter.annotations.read_only_hint is True and waiter.annotations.idempotent_hint is True
            assert waiter.input_schema["required"] == ["connection_id"]
            assert waiter.input_schema["properties"]["timeout_seconds"]["maximum"] == 60
            assert waiter.output_schema is not None

            blocked = await mcp.call_tool(flow.tool, flow.arguments)
            error = error_of(blocked)
            assert error["code"] == "not_connected"
            assert error["connectUrl"] in text_of(blocked) and WAIT_TOOL in text_of(blocked)
            assert error["message"] == text_of(blocked)
            connection_id = error["connectionId"]

            waited: list[types.CallToolResult] = []

            async def wait() -> None:
                waited.append(await mcp.call_tool(WAIT_TOOL, {"connection_id": connection_id}))

            with anyio.fail_after(STEP_SECONDS):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(wait)
                    await flow.complete(Pending(owner, connection_id, error["connectUrl"]))
            [done] = waited
            assert done.is_error is False
            assert done.structured_content == {
                "connectionId": connection_id,
                "status": "active",
                "connected": True,
            }
            again = await mcp.call_tool(flow.tool, flow.arguments)
    assert_sent_once(flow, fakes, again)


@pytest.mark.parametrize("flow", FLOWS)
async def test_wait_for_connection_gives_up_after_its_timeout(
    live_tendril: LiveTendril, fakes: Fakes, flow: Flow
) -> None:
    async with live_tendril.client() as owner:
        agent = await owner.create_agent("impatient", [flow.connector])
        async with mcp_session(live_tendril, agent.api_key) as mcp:
            connection_id = error_of(await mcp.call_tool(flow.tool, flow.arguments))["connectionId"]
            with anyio.fail_after(STEP_SECONDS):
                started = anyio.current_time()
                waited = await mcp.call_tool(
                    WAIT_TOOL, {"connection_id": connection_id, "timeout_seconds": 1}
                )
                elapsed = anyio.current_time() - started
            too_long = await mcp.call_tool(WAIT_TOOL, {"connection_id": connection_id, "timeout_seconds": 61})
            too_short = await mcp.call_tool(WAIT_TOOL, {"connection_id": connection_id, "timeout_seconds": 0})
    assert waited.is_error is False
    assert waited.structured_content == {
        "connectionId": connection_id,
        "status": "pending",
        "connected": False,
    }
    assert 0.9 <= elapsed < 10
    for refused in (too_long, too_short):
        assert (error_of(refused)["code"], error_of(refused)["field"]) == ("invalid_input", "timeout_seconds")


async def test_wait_for_connection_hides_what_the_agent_may_not_see(
    live_tendril: LiveTendril, fakes: Fakes
) -> None:
    flow = TELEGRAM
    stranger = await anyio.to_thread.run_sync(_bootstrap_owner, live_tendril.settings, "stranger")
    async with live_tendril.client(stranger.api_key) as other:
        theirs = await other.create_agent("theirs", [flow.connector])
    async with mcp_session(live_tendril, theirs.api_key) as mcp:
        foreign_id = error_of(await mcp.call_tool(flow.tool, flow.arguments))["connectionId"]

    async with live_tendril.client() as owner:
        mine = await owner.create_agent("mine", [flow.connector])
        slack_only = await owner.create_agent("slack-only", ["slack"])
        nothing = await owner.create_agent("nothing", [])
        async with mcp_session(live_tendril, mine.api_key) as mcp:
            own_id = error_of(await mcp.call_tool(flow.tool, flow.arguments))["connectionId"]
            with anyio.fail_after(STEP_SECONDS):  # none of these waits
                answers = [
                    await mcp.call_tool(WAIT_TOOL, {"connection_id": connection_id, "timeout_seconds": 60})
                    for connection_id in (foreign_id, str(uuid.uuid4()), "not-a-uuid")
                ]
        async with mcp_session(live_tendril, slack_only.api_key) as mcp:
            with anyio.fail_after(STEP_SECONDS):  # the owner's, but not a connector this agent may use
                answers.append(
                    await mcp.call_tool(WAIT_TOOL, {"connection_id": own_id, "timeout_seconds": 60})
                )
        async with mcp_session(live_tendril, nothing.api_key) as mcp:
            assert (await mcp.list_tools()).tools == []
            with pytest.raises(MCPError, match=f"Unknown tool: {WAIT_TOOL}"):
                await mcp.call_tool(WAIT_TOOL, {"connection_id": own_id})

    first = answers[0]
    assert error_of(first)["code"] == "not_found"
    assert foreign_id not in text_of(first)
    for answer in answers[1:]:
        assert (answer.is_error, answer.content, answer.structured_content) == (
            first.is_error,
            first.content,
            first.structured_content,
        )
