"""Rate limits as the Integration Layer documents them: 100 requests per minute per API key by
default, configurable per key and for the server; X-RateLimit-Limit, -Remaining and -Reset on every
/api/v1 answer; 429 with Retry-After and the usual error shape past the limit, before anything is
done. Counted in-process on SQLite and shared by the replicas on PostgreSQL. Agents have their own
limit on MCP tool calls, answered as a tool error with retryAfter."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest

from server.app import build_app, build_core
from server.settings import Settings
from tests.conftest import TELEGRAM_TOKEN, Fakes, LiveTendril, Tendril, running_tendril
from tests.support.core import MovableClock
from tests.support.mcp import mcp_client

pytestmark = pytest.mark.anyio

SEED_LIMIT = 100


@pytest.fixture
def seed_settings(settings: Settings) -> Settings:
    """The server's defaults for limits (the shared test settings raise them for other tests)."""
    defaults = Settings.model_fields
    return settings.model_copy(
        update={
            "api_rate_limit": defaults["api_rate_limit"].default,
            "agent_tool_call_rate_limit": defaults["agent_tool_call_rate_limit"].default,
        }
    )


def window_of(answer: httpx.Response) -> tuple[int, int, int]:
    headers = answer.headers
    return (
        int(headers["x-ratelimit-limit"]),
        int(headers["x-ratelimit-remaining"]),
        int(headers["x-ratelimit-reset"]),
    )


def assert_refused(answer: httpx.Response, limit: int) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.json()["code"] == "RATE_LIMITED"
    assert f"{limit} requests per minute" in answer.json()["error"]
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert window_of(answer)[:2] == (limit, 0)


def keyed(tendril: Tendril, key: str) -> httpx.AsyncClient:
    http = tendril.raw()
    http.headers["Authorization"] = f"Bearer {key}"
    return http


async def test_a_key_gets_100_requests_a_minute_with_headers_then_429(seed_settings: Settings) -> None:
    assert seed_settings.api_rate_limit == SEED_LIMIT
    async with running_tendril(seed_settings) as tendril:
        owner = await tendril.new_owner()
        other = await tendril.core.identity.create_api_key(
            (await tendril.core.identity.owner_named(owner.name)).id, name="other"
        )
        async with keyed(tendril, owner.api_key) as http:
            started = time.time()
            for n in range(1, SEED_LIMIT + 1):
                answer = await http.get("/api/v1/connections")
                assert answer.status_code == 200
                limit, remaining, reset = window_of(answer)
                assert (limit, remaining) == (SEED_LIMIT, SEED_LIMIT - n)
                assert started < reset <= started + 61  # Unix time the window ends
            refused = await http.post("/api/v1/connections", json={"connectorSlug": "telegram"})
            assert_refused(refused, SEED_LIMIT)
            # Refused before anything was done: no connection was started.
        assert (
            await tendril.core.connections.list((await tendril.core.identity.owner_named(owner.name)).id)
            == []
        )

        # Another key of the same owner has a window of its own.
        async with keyed(tendril, other.plaintext) as http:
            answer = await http.get("/api/v1/connections")
            assert answer.status_code == 200 and window_of(answer)[:2] == (SEED_LIMIT, SEED_LIMIT - 1)


async def test_every_api_answer_carries_the_headers_refusals_included(seed_settings: Settings) -> None:
    async with running_tendril(seed_settings) as tendril:
        owner = await tendril.new_owner()
        reader = await tendril.new_owner(permissions=["read"])
        async with tendril.raw() as http:
            answers = {
                "no key": await http.get("/api/v1/connections"),
                "wrong key": await http.get("/api/v1/agents", headers={"X-Api-Key": "tdl_wrong"}),
                "document": await http.get("/api/v1/openapi"),
                "unknown route": await http.get("/api/v1/nothing-here"),
                "wrong method": await http.put("/api/v1/connections"),
                "bad id": await http.get(
                    "/api/v1/connections/not-a-uuid", headers={"X-Api-Key": owner.api_key}
                ),
                "no permission": await http.post(
                    "/api/v1/agents", json={"name": "x"}, headers={"X-Api-Key": reader.api_key}
                ),
                "bad body": await http.post(
                    "/api/v1/connections", content=b"{", headers={"X-Api-Key": owner.api_key}
                ),
                "files API": await http.get("/connectors", headers={"X-Api-Key": owner.api_key}),
            }
        for what, answer in answers.items():
            assert answer.status_code < 500, what
            limit, remaining, _ = window_of(answer)
            assert limit == SEED_LIMIT and 0 <= remaining < SEED_LIMIT, what


async def test_a_key_s_own_limit_is_set_on_create_and_changed_by_patch(tendril: Tendril) -> None:
    admin = await tendril.new_owner()
    async with keyed(tendril, admin.api_key) as http:
        made = await http.post("/api/v1/keys", json={"name": "batch", "rateLimit": 3})
        assert made.status_code == 201 and made.json()["key"]["rateLimit"] == 3
        key_id, key = made.json()["key"]["id"], made.json()["apiKey"]
        async with keyed(tendril, key) as limited:
            for n in range(3):
                assert window_of(await limited.get("/api/v1/connectors"))[:2] == (3, 2 - n)
            assert_refused(await limited.get("/api/v1/connectors"), 3)

            changed = await http.patch(f"/api/v1/keys/{key_id}", json={"rateLimit": 5})
            assert changed.status_code == 200 and changed.json()["rateLimit"] == 5
            assert window_of(await limited.get("/api/v1/connectors"))[0] == 5

            default = await http.patch(f"/api/v1/keys/{key_id}", json={"rateLimit": None})
            assert default.json()["rateLimit"] is None
            assert (
                window_of(await limited.get("/api/v1/connectors"))[0] == tendril.core.settings.api_rate_limit
            )

        for wrong in (0, -1, 1_000_001, "many", 2.5):
            refused = await http.patch(f"/api/v1/keys/{key_id}", json={"rateLimit": wrong})
            assert (
                refused.status_code == 400 and "rateLimit must be a whole number" in refused.json()["error"]
            )
        unknown = await http.patch(f"/api/v1/keys/{key_id}", json={"permissions": ["admin"]})
        assert unknown.status_code == 400 and "PATCH takes name and rateLimit" in unknown.json()["error"]


async def test_the_server_default_is_a_setting(settings: Settings) -> None:
    async with running_tendril(settings.model_copy(update={"api_rate_limit": 2})) as tendril:
        owner = await tendril.new_owner()
        async with keyed(tendril, owner.api_key) as http:
            assert (await http.get("/api/v1/agents")).status_code == 200
            assert (await http.get("/api/v1/agents")).status_code == 200
            assert_refused(await http.get("/api/v1/agents"), 2)


@asynccontextmanager
async def replica(settings: Settings, clock: MovableClock) -> AsyncIterator[Tendril]:
    core = build_core(settings, clock=clock)
    app = build_app(settings, core=core)
    async with app.router.lifespan_context(app):
        yield Tendril(app, core, "http://127.0.0.1:8080", clock)


async def test_replicas_on_postgresql_share_one_window(settings: Settings) -> None:
    if not settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("one process on SQLite: nothing to share")
    settings = settings.model_copy(update={"api_rate_limit": 100, "rate_limit_sync_seconds": 3600})
    clock = MovableClock()
    async with replica(settings, clock) as first, replica(settings, clock) as second:
        owner = await first.new_owner()
        async with keyed(first, owner.api_key) as a, keyed(second, owner.api_key) as b:
            for _ in range(60):
                assert (await a.get("/api/v1/connections")).status_code == 200
            await first.core.rate_limits.counter.flush()  # what each replica does every second
            allowed = 0
            while (await b.get("/api/v1/connections")).status_code == 200:
                allowed += 1
                assert allowed <= 40
            assert allowed == 40  # the second replica had only what the first left
            await first.core.rate_limits.counter.flush()
            assert_refused(await a.get("/api/v1/connections"), 100)  # and the first sees it too

            clock.advance(timedelta(seconds=61))  # the window ends for both
            assert (await b.get("/api/v1/connections")).status_code == 200
            assert window_of(await a.get("/api/v1/connections"))[1] == 98


async def test_an_exhausted_key_is_refused_at_once_by_another_replica(settings: Settings) -> None:
    if not settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("one process on SQLite: nothing to share")
    settings = settings.model_copy(update={"api_rate_limit": 10, "rate_limit_sync_seconds": 3600})
    clock = MovableClock()
    async with replica(settings, clock) as first, replica(settings, clock) as second:
        owner = await first.new_owner()
        async with keyed(first, owner.api_key) as a, keyed(second, owner.api_key) as b:
            for _ in range(10):
                assert (await a.get("/api/v1/agents")).status_code == 200
            # Near the limit every request looks at the shared count: no flush needed.
            assert_refused(await b.get("/api/v1/agents"), 10)


async def test_an_agent_past_its_tool_call_limit_gets_an_error_result_with_retry_after(
    live_tendril: LiveTendril, fakes: Fakes
) -> None:
    async with live_tendril.client() as owner:
        started = await owner.create_connection("telegram")
        await owner.submit_credentials(started.connection.id, {"bot_token": TELEGRAM_TOKEN})
        created = await owner.request(
            "POST",
            "/api/v1/agents",
            json={"name": "chatty", "allowedConnectors": ["telegram"], "toolCallRateLimit": 2},
        )
    assert created["agent"]["toolCallRateLimit"] == 2
    async with mcp_client(live_tendril.url, created["apiKey"]) as mcp:
        first = await mcp.call_tool("telegram_get_me", {})
        second = await mcp.call_tool("telegram_get_me", {})
        third = await mcp.call_tool("telegram_get_me", {})
    assert first.is_error is False and second.is_error is False
    assert third.is_error is True
    assert third.structured_content is not None
    error = third.structured_content["error"]
    assert error["code"] == "rate_limited" and 1 <= error["retryAfter"] <= 60
    assert "2 tool calls per minute" in error["message"]
