"""Failed sign-ins and bad keys are slowed down per client and per key prefix (429 with
Retry-After, before any key is looked up), and each failure is logged without the key."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from server.settings import Settings
from tests.conftest import Tendril, running_tendril
from tests.support.browser_http import signin_token_of

pytestmark = pytest.mark.anyio

PER_CLIENT, PER_PREFIX = 8, 4


@pytest.fixture
async def strict(settings: Settings) -> AsyncIterator[Tendril]:
    limits = {"auth_failures_per_client": PER_CLIENT, "auth_failures_per_key_prefix": PER_PREFIX}
    async with running_tendril(settings.model_copy(update=limits)) as tendril:
        yield tendril


def client_at(tendril: Tendril, address: str) -> httpx.AsyncClient:
    """A client whose requests come from `address` (the ASGI scope's peer)."""
    transport = httpx.ASGITransport(app=tendril.app, client=(address, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(base_url=tendril.base_url, transport=transport)


async def test_a_client_guessing_keys_gets_429s_with_retry_after_and_others_are_unaffected(
    strict: Tendril, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    owner = await strict.new_owner()
    guesses = [f"tdl_{n:04d}guess-{'x' * 30}" for n in range(PER_CLIENT + 3)]  # all different prefixes
    async with client_at(strict, "203.0.113.7") as attacker, client_at(strict, "198.51.100.2") as bystander:
        answers = [
            await attacker.get("/api/v1/connections", headers={"X-Api-Key": guess}) for guess in guesses
        ]
        assert [a.status_code for a in answers[:PER_CLIENT]] == [401] * PER_CLIENT
        throttled = answers[PER_CLIENT:]
        assert all(a.status_code == 429 and a.json()["code"] == "RATE_LIMITED" for a in throttled)
        assert all(1 <= int(a.headers["retry-after"]) <= 60 for a in throttled)
        # Even the right key waits while its client is slowed down; another client is not.
        assert (
            await attacker.get("/api/v1/connections", headers={"X-Api-Key": owner.api_key})
        ).status_code == 429
        assert (
            await bystander.get("/api/v1/connections", headers={"X-Api-Key": owner.api_key})
        ).status_code == 200
    failures = [r.getMessage() for r in caplog.records if "failed API key" in r.getMessage()]
    assert len(failures) == PER_CLIENT and all("203.0.113.7" in line for line in failures)
    assert not any(guess[4:] in caplog.text for guess in guesses)  # the attempted keys are not logged


async def test_guesses_at_one_key_prefix_are_slowed_down_from_any_client(strict: Tendril) -> None:
    prefix = "tdl_AbCdEfGh"
    answers = []
    for n in range(PER_PREFIX + 2):
        async with client_at(strict, f"192.0.2.{n + 1}") as http:  # a botnet: a new address each time
            answers.append(
                (await http.get("/api/v1/agents", headers={"X-Api-Key": f"{prefix}{n:030d}"})).status_code
            )
    assert answers == [401] * PER_PREFIX + [429, 429]


async def test_the_sign_in_page_is_throttled_too(strict: Tendril) -> None:
    async with client_at(strict, "203.0.113.9") as browser:
        statuses = []
        for n in range(PER_CLIENT + 1):
            form = await browser.get("/signin")
            answer = await browser.post(
                "/signin",
                data={"api_key": f"tdl_wrong{n:03d}-{'k' * 30}", "signin_token": signin_token_of(form.text)},
            )
            statuses.append(answer.status_code)
    assert statuses == [401] * PER_CLIENT + [429]
    assert "retry-after" in answer.headers and "too many failed attempts" in answer.text


async def test_bad_agent_keys_on_mcp_are_throttled_before_the_key_is_checked(strict: Tendril) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with client_at(strict, "203.0.113.11") as http:
        statuses = [
            (
                await http.post(
                    "/mcp",
                    json=body,
                    headers={**headers, "Authorization": f"Bearer tdl_agent_{n:03d}bad-{'z' * 30}"},
                )
            ).status_code
            for n in range(PER_CLIENT + 1)
        ]
        last = await http.post("/mcp", json=body, headers={**headers, "Authorization": "Bearer tdl_agent_x"})
    assert statuses == [401] * PER_CLIENT + [429]
    assert last.status_code == 429 and last.headers["retry-after"]
