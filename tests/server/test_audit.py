"""The audit trail: each kind of event recorded after the real action, with who, what, on which
connection, how it ended and how long it took; never arguments, results or secrets. Read back
through GET /api/v1/audit (filters, cursor pages) and the dashboard page, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from mcp.shared.exceptions import MCPError

from clients import TendrilApiError, TendrilClient
from clients.models import AuditEvent
from server.core.audit import Actor, acting_as
from server.core.group_commit import GroupCommit
from server.settings import Settings
from storage import schema
from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, LiveTendril, OAuthFakes, Owner, Tendril
from tests.server.test_oauth_flow import connected_via_oauth
from tests.support.browser_http import BrowserLike, csrf_of, signin_token_of
from tests.support.core import prepared_core, stored_rows
from tests.support.mcp import mcp_client

pytestmark = pytest.mark.anyio

ARGUMENT_CANARY = "ArgumentCanary-7d1e-never-audited"


async def audit_rows(tendril: Tendril) -> list[dict[str, Any]]:
    """Every stored event, whoever's (written first), as the database holds them."""
    await tendril.core.audit.flush()
    async with stored_rows(tendril.core.settings) as store, store.engine.connect() as conn:
        rows = await conn.execute(sa.select(schema.audit_events).order_by(schema.audit_events.c.id))
        return [dict(row._mapping) for row in rows]


async def events(client: TendrilClient, **filters: Any) -> list[AuditEvent]:
    """Every page of the owner's events matching `filters`, newest first."""
    found: list[AuditEvent] = []
    cursor: str | None = None
    while True:
        page = await client.audit(**filters, cursor=cursor)
        found += page.events
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def key_id_of(client: TendrilClient, name: str = "test") -> str:
    [key] = [k for k in await client.keys() if k.name == name]
    return key.id


# -- MCP tool calls ------------------------------------------------------------------------------
async def test_mcp_tool_calls_are_audited_with_agent_connection_outcome_and_latency(
    live_tendril: LiveTendril, fakes: Fakes
) -> None:
    async with live_tendril.client() as owner:
        started = await owner.create_connection("slack")
        slack = (await owner.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})).id
        agent = await owner.create_agent("audited", ["slack", "telegram"])

        async with mcp_client(live_tendril.url, agent.api_key) as mcp:
            sent = await mcp.call_tool("slack_post_message", {"channel": "#general", "text": ARGUMENT_CANARY})
            assert sent.is_error is False
            pending = await mcp.call_tool("telegram_get_me", {})  # no Telegram connection yet
            assert pending.is_error is True
            with pytest.raises(MCPError):
                await mcp.call_tool("github_create_issue", {"title": ARGUMENT_CANARY})  # not allowed
            claimed = await mcp.call_tool("tendril_claim_jobs", {})
            assert claimed.is_error is False

        answer = await owner.request("GET", "/api/v1/audit", params={"kind": "tool"})
        calls = [AuditEvent.model_validate(e) for e in answer["events"]]
        everything = await owner.request("GET", "/api/v1/audit", params={"limit": 500})

    assert [(e.action, e.outcome) for e in calls] == [
        ("tendril_claim_jobs", "ok"),
        ("github_create_issue", "unknown_tool"),
        ("telegram_get_me", "not_connected"),
        ("slack_post_message", "ok"),
    ]
    for event in calls:
        assert event.kind == "tool.call"
        assert (event.actor.type, event.actor.id, event.agent_id) == ("agent", agent.agent.id, agent.agent.id)
        assert event.latency_ms is not None and event.latency_ms > 0
    post = calls[-1]
    assert (post.connection_id, post.connector, post.detail) == (slack, "slack", {})
    assert calls[-2].connector == "telegram" and calls[-2].connection_id  # the pending one it made
    # Never the arguments, the result or the token.
    text = json.dumps(everything)
    for secret in (ARGUMENT_CANARY, SLACK_TOKEN, fakes.slack.messages[-1]["ts"]):
        assert secret not in text


# -- REST actions, credentials, status moves -------------------------------------------------------
async def test_rest_actions_credentials_and_status_moves_are_audited(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    key_id = await key_id_of(client)
    started = await client.create_connection("telegram")
    connection = started.connection.id
    with pytest.raises(TendrilApiError):
        await client.submit_credentials(
            connection, {"bot_token": "12345678:NotTheRightTokenCanary000000000000000"}
        )
    await client.submit_credentials(connection, {"bot_token": TELEGRAM_TOKEN})
    await client.run_action(connection, "get_me", {})
    await client.connect_once("telegram", action="get_me", token=TELEGRAM_TOKEN)
    credential = await client.create_credential(
        "a bot", provider="telegram", data={"bot_token": TELEGRAM_TOKEN}
    )
    await client.delete_connection(connection)

    found = await events(client)
    by_kind = [(e.kind, e.outcome) for e in reversed(found)]  # oldest first
    assert by_kind == [
        ("key.create", "ok"),  # the owner's first key, made by the test fixture
        ("credential.verify", "invalid_input"),
        ("credential.submit", "invalid_input"),
        ("credential.verify", "ok"),
        ("connection.status", "ok"),
        ("credential.submit", "ok"),
        ("action.run", "ok"),
        ("action.run", "ok"),
        ("credential.verify", "ok"),
        ("credential.submit", "ok"),
        ("connection.status", "ok"),
    ]
    for event in found[:-1]:
        assert (event.actor.type, event.actor.id) == ("key", key_id)
    assert found[-1].actor.type == "system"  # made by the fixture through the core
    run, once = [e for e in found if e.kind == "action.run"][::-1]
    assert (run.connection_id, run.connector, run.action) == (connection, "telegram", "telegram_get_me")
    assert run.latency_ms is not None and run.latency_ms > 0
    assert (once.connection_id, once.action, once.detail) == (None, "telegram_get_me", {"oneShot": True})
    moves = [e.detail for e in reversed(found) if e.kind == "connection.status"]
    assert moves == [{"from": "pending", "to": "active"}, {"from": "active", "to": "revoked"}]
    submitted = [e for e in found if e.kind == "credential.submit"]
    assert submitted[0].detail == {"credential": credential.id, "operation": "create"}
    assert submitted[1].connection_id == connection and submitted[1].connector == "telegram"
    assert next(e for e in found if e.kind == "credential.verify").detail == {"credential": credential.id}
    rows = json.dumps([{k: str(v) for k, v in row.items()} for row in await audit_rows(tendril)])
    assert TELEGRAM_TOKEN not in rows and "NotTheRightTokenCanary" not in rows


async def test_a_refused_provider_credential_moves_the_connection_and_says_so(
    tendril: Tendril, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("slack")
    await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
    fakes.slack.revoke_token(SLACK_TOKEN)  # Slack now refuses the stored token
    with pytest.raises(TendrilApiError):
        await client.run_action(started.connection.id, "list_channels", {})
    [run, move] = (await client.audit(kind="action.run")).events + (
        await client.audit(kind="connection.status")
    ).events[:1]
    assert (run.outcome, move.detail) == ("not_connected", {"from": "active", "to": "needs_reauth"})


# -- OAuth -------------------------------------------------------------------------------------------
async def test_oauth_completions_and_failures_are_audited(
    oauth_tendril: Tendril, oauth_fakes: OAuthFakes
) -> None:
    owner = await oauth_tendril.new_owner()
    client = oauth_tendril.client(owner.api_key)
    connected = await connected_via_oauth(oauth_tendril, owner, "github")
    oauth_fakes.github.next_consent = "deny"
    started = await client.create_connection("github", label="declined")
    assert started.oauth_url is not None
    async with BrowserLike(oauth_tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        assert (await browser.follow(started.oauth_url)).status_code == 400
        forged = await browser.get("/api/v1/connections/oauth/callback?state=forged-state&code=c")
        assert forged.status_code == 400

        # Declined, and the provider's redirect opened in a browser signed in as someone else.
        stranger = await oauth_tendril.new_owner()
        oauth_fakes.github.next_consent = "deny"
        declined = await browser.provider_redirect(await browser.stop_at_provider(started.oauth_url))
        async with BrowserLike(oauth_tendril.transport()) as theirs:
            await theirs.sign_in(stranger.api_key)
            assert (await theirs.get(declined)).status_code == 400

    found = await events(client, kind="oauth")
    assert [(e.kind, e.outcome, e.connection_id) for e in found] == [
        ("oauth.fail", "access_denied", started.connection.id),
        ("oauth.fail", "unknown_state", None),
        ("oauth.fail", "access_denied", started.connection.id),
        ("oauth.complete", "ok", connected),
    ]
    key_id = await key_id_of(client)
    assert (found[0].actor.type, found[0].actor.id) == ("session", None)  # the stranger stays unnamed
    assert (found[1].actor.id, found[2].actor.id) == (key_id, key_id)
    complete = found[-1]
    assert complete.connector == "github" and complete.actor.type == "session"
    assert complete.actor.id == key_id
    assert [e.kind for e in await events(oauth_tendril.client(stranger.api_key))] == [
        "signin.ok",
        "key.create",
    ]
    assert "forged-state" not in json.dumps([e.model_dump() for e in found])
    moves = [e.detail for e in await events(client, connection=started.connection.id)]
    assert {"from": "pending", "to": "pending"} not in moves  # a move to where it was is no move


# -- keys, agents, sign-ins -------------------------------------------------------------------------
async def test_key_and_agent_changes_are_audited(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    key_id = await key_id_of(client)
    made = await client.create_key("reader", permissions=["read"])
    await client.update_key(made.key.id, name="reader-2", rate_limit=10)
    await tendril.core.identity.rotate_api_key(UUID(owner.id), UUID(made.key.id))  # as the CLI does
    await client.revoke_key(made.key.id)
    agent = await client.create_agent("worker", ["slack"])
    await client.update_agent(agent.agent.id, allowed_connectors=["slack", "telegram"])
    await client.rotate_agent_key(agent.agent.id)
    await client.delete_agent(agent.agent.id)

    found = list(reversed(await events(client)))[1:]  # oldest first, without the fixture's key
    assert [(e.kind, e.actor.type) for e in found] == [
        ("key.create", "key"),
        ("key.update", "key"),
        ("key.rotate", "system"),
        ("key.revoke", "key"),
        ("agent.create", "key"),
        ("agent.update", "key"),
        ("agent.rotate_key", "key"),
        ("agent.delete", "key"),
    ]
    assert found[0].actor.id == key_id
    assert found[0].detail == {"keyId": made.key.id, "name": "reader", "permissions": ["read"]}
    assert found[1].detail == {"keyId": made.key.id, "changed": ["name", "rate_limit"]}
    assert found[2].detail == found[3].detail == {"keyId": made.key.id}
    assert found[4].detail == {"name": "worker", "allowedConnectors": ["slack"]}
    assert found[5].detail == {"changed": ["allowedConnectors"]}
    assert {e.agent_id for e in found[4:]} == {agent.agent.id}
    assert [e.kind for e in await events(client, agent=agent.agent.id)][-1] == "agent.create"
    text = json.dumps(await client.request("GET", "/api/v1/audit"))
    assert made.api_key not in text and agent.api_key not in text


async def test_sign_ins_are_audited_and_a_session_acts_as_its_key(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    spare = await client.create_key("spare")
    await client.revoke_key(spare.key.id)
    started = await client.create_connection("slack")
    async with BrowserLike(tendril.transport()) as browser:
        for wrong in ("tdl_nobodys-key-canary-0000000000", spare.api_key):
            form = await browser.tendril.get("/signin")
            refused = await browser.tendril.post(
                "/signin", data={"api_key": wrong, "signin_token": signin_token_of(form.text)}
            )
            assert refused.status_code == 401
        await browser.sign_in(owner.api_key)
        dashboard = await browser.get("/dashboard")
        revoked = await browser.tendril.post(
            f"/dashboard/connections/{started.connection.id}/revoke", data={"csrf": csrf_of(dashboard.text)}
        )
        assert revoked.status_code == 303

    key_id = await key_id_of(client)
    signins = await events(client, kind="signin")
    assert [(e.kind, e.outcome, e.actor.id, e.detail.get("reason")) for e in signins] == [
        ("signin.ok", "ok", key_id, None),
        ("signin.fail", "unauthenticated", spare.key.id, "revoked key"),
    ]
    assert signins[0].detail["client"] == signins[1].detail["client"] and signins[0].detail["client"]
    [move] = await events(client, kind="connection.status")
    assert (move.actor.type, move.actor.id, move.detail["to"]) == ("session", key_id, "revoked")
    # A key nobody holds: recorded for no owner (an operator's concern), never shown to one.
    [unowned] = [row for row in await audit_rows(tendril) if row["owner_id"] is None]
    assert (unowned["kind"], unowned["detail"]["reason"]) == ("signin.fail", "unknown key")
    assert "canary" not in json.dumps(unowned["detail"])


# -- reading: filters, pages, isolation ------------------------------------------------------------
async def test_filters_and_cursor_pages(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    first = await client.create_agent("first", ["slack"])
    tendril.clock.advance(timedelta(hours=1))
    middle = datetime.now(UTC) + timedelta(minutes=30)
    second = await client.create_agent("second", ["slack"])
    for n in range(6):
        await client.update_agent(second.agent.id, name=f"second-{n}")
    started = await client.create_connection("telegram")
    await client.submit_credentials(started.connection.id, {"bot_token": TELEGRAM_TOKEN})

    everything = await events(client)
    assert len(everything) == 1 + 2 + 6 + 3
    assert [e.id for e in everything] == sorted((e.id for e in everything), reverse=True)
    assert [e.at for e in everything] == sorted((e.at for e in everything), reverse=True)
    paged = await events(client, limit=5)
    assert [e.id for e in paged] == [e.id for e in everything]
    page = await client.audit(limit=5)
    assert len(page.events) == 5 and page.next_cursor

    assert [e.kind for e in await events(client, agent=first.agent.id)] == ["agent.create"]
    assert len(await events(client, agent=second.agent.id)) == 7
    assert len(await events(client, kind="agent.update")) == 6
    assert {e.kind for e in await events(client, kind="credential")} == {
        "credential.submit",
        "credential.verify",
    }
    on_connection = await events(client, connection=started.connection.id)
    assert {e.kind for e in on_connection} == {"credential.submit", "credential.verify", "connection.status"}
    later = await events(client, since=middle.isoformat())
    earlier = await events(client, until=middle.isoformat())
    assert len(later) + len(earlier) == len(everything)
    assert [e.detail.get("name") for e in earlier] == ["first", "test"]  # its agent, the owner's key
    assert await events(client, since=middle.isoformat(), until=middle.isoformat()) == []
    # Times outside what an id can hold (found by fuzzing: a 500 before) bound nothing.
    ancient, far = "0623-07-07T06:10:41.275-12:57", "9999-12-31T23:59:59+00:00"
    assert len(await events(client, since=ancient, until=far)) == len(everything)
    assert await events(client, until=ancient) == [] and await events(client, since=far) == []

    for params, field in (
        ({"kind": "tool.calls"}, "kind"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "501"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"agent": "nobody"}, "agent"),
    ):
        with pytest.raises(TendrilApiError) as refused:
            await client.request("GET", "/api/v1/audit", params=params)
        assert refused.value.status == 400 and refused.value.body["field"] == field, params


async def test_another_owner_sees_none_of_them(tendril: Tendril, fakes: Fakes) -> None:
    alice, bob = await tendril.new_owner(), await tendril.new_owner()
    alice_client, bob_client = tendril.client(alice.api_key), tendril.client(bob.api_key)
    agent = await alice_client.create_agent("alices", ["telegram"])
    started = await alice_client.create_connection("telegram")
    await alice_client.submit_credentials(started.connection.id, {"bot_token": TELEGRAM_TOKEN})

    theirs = await events(bob_client)
    assert [e.kind for e in theirs] == ["key.create"]  # only Bob's own first key
    text = json.dumps([e.model_dump() for e in theirs])
    for alices in (alice.id, agent.agent.id, started.connection.id, "alices"):
        assert alices not in text
    assert await events(bob_client, agent=agent.agent.id) == []
    assert await events(bob_client, connection=started.connection.id) == []
    # A cursor is only a point in time: with Alice's, Bob still reads only his own events.
    alices_page = await alice_client.audit(limit=1)
    assert alices_page.next_cursor is not None
    after_hers = (await bob_client.audit(cursor=alices_page.next_cursor)).events
    assert {e.id for e in after_hers} <= {e.id for e in theirs}


# -- retention and failures ----------------------------------------------------------------------
async def test_retention_deletes_events_past_the_period(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    await client.create_agent("old", ["slack"])
    assert tendril.core.settings.audit_retention_days == 90
    tendril.clock.advance(timedelta(days=60))
    await client.create_agent("recent", ["slack"])
    tendril.clock.advance(timedelta(days=31))  # the first two events are now 91 days old
    await client.create_agent("new", ["slack"])

    await tendril.core.audit.flush()
    assert await tendril.core.audit.prune() >= 2
    assert [e.detail.get("name") for e in await events(client)] == ["new", "recent"]


async def test_an_event_that_cannot_be_written_is_dropped_and_the_rest_are_kept(tendril: Tendril) -> None:
    kept, gone = await tendril.new_owner(), await tendril.new_owner()
    core = tendril.core
    for owner in (kept, gone):
        core.audit.record("agent.delete", UUID(owner.id), agent_id=UUID(int=1))
    async with stored_rows(core.settings) as store, store.engine.begin() as conn:
        await conn.execute(sa.delete(schema.owners).where(schema.owners.c.id == UUID(gone.id)))
    await core.audit.flush()  # the batch fails on the deleted owner; the rest is written alone
    rows = await audit_rows(tendril)
    assert [str(r["owner_id"]) for r in rows if r["kind"] == "agent.delete"] == [kept.id]


async def test_changes_made_without_a_running_loop_are_written_at_close(settings: Settings) -> None:
    async with prepared_core(settings) as core:  # as the CLI works: no background loops
        owner = await core.identity.create_owner("cli-owner")
        await core.identity.create_agent(owner.id, name="cli-agent", allowed_connectors=["slack"])
    async with stored_rows(settings) as store, store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.audit_events))).all()
    assert [(r.kind, r.actor_type, r.owner_id) for r in rows] == [("agent.create", "system", owner.id)]


async def test_a_failing_store_never_fails_the_recording_or_the_flush() -> None:
    async def refuse(batch: list[int]) -> list[None]:
        raise OSError("the database is away")

    commits: GroupCommit[int, None] = GroupCommit(refuse, name="test", linger=0.01, max_pending=3)
    running = asyncio.create_task(commits.run())
    await asyncio.sleep(0)
    assert [commits.submit(n) for n in range(4)] == [True, True, True, False]
    await commits.flush()
    assert commits.dropped == 4
    commits.stop()
    await asyncio.wait_for(running, 5)


def test_the_actor_is_the_request_s_and_system_outside_one() -> None:
    from server.core.audit import current_actor

    assert current_actor() == Actor("system")
    with acting_as(Actor.key(UUID(int=7))):
        assert current_actor() == Actor("key", UUID(int=7))
    assert current_actor().type == "system"


# -- the dashboard page ---------------------------------------------------------------------------
async def test_the_audit_page_lists_filters_and_pages_the_owners_events(tendril: Tendril) -> None:
    owner, stranger = await tendril.new_owner(), await tendril.new_owner()
    client = tendril.client(owner.api_key)
    agent = await client.create_agent("paged-agent", ["slack"])
    for n in range(55):
        await client.update_agent(agent.agent.id, name=f"paged-{n}")
    await tendril.client(stranger.api_key).create_agent("strangers-agent", ["slack"])
    async with BrowserLike(tendril.transport()) as browser:
        await browser.sign_in(owner.api_key)
        dashboard = await browser.get("/dashboard")
        assert 'href="/dashboard/audit"' in dashboard.text
        newest = await browser.get("/dashboard/audit")
        assert newest.status_code == 200 and newest.headers["cache-control"] == "no-store"
        assert newest.text.count("data-event=") == 50 and "signin.ok" in newest.text
        assert "strangers-agent" not in newest.text and 'id="older"' in newest.text
        older_url = newest.text.split('id="older"')[0].rsplit('href="', 1)[1].split('"')[0]
        older = await browser.get(older_url.replace("&amp;", "&"))
        assert older.status_code == 200 and 'id="newest"' in older.text
        assert 0 < older.text.count("data-event=") < 50 and "agent.create" in older.text
        only_creates = await browser.get(f"/dashboard/audit?kind=agent.create&agent={agent.agent.id}")
        assert only_creates.text.count("data-event=") == 1 and 'id="older"' not in only_creates.text
        wrong = await browser.get("/dashboard/audit?kind=nonsense")
        assert wrong.status_code == 400 and "unknown kind" in wrong.text


async def test_the_owner_key_fixture_is_the_only_event_of_a_new_owner(tendril: Tendril) -> None:
    owner: Owner = await tendril.new_owner()
    [created] = await events(tendril.client(owner.api_key))
    assert (created.kind, created.actor.type, created.detail["name"]) == ("key.create", "system", "test")
