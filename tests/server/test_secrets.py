"""Canary secrets never leave Tendril: not in responses, logs, tool results or the database."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from auth.crypto import Keyring, generate_key
from server.app import build_app
from server.logs import install_redaction
from server.settings import Settings
from storage import schema
from storage.sealed import SEALED_COLUMNS, SealedValues
from tests.conftest import SLACK_TOKEN, TELEGRAM_TOKEN, Fakes, LiveTendril, Tendril, running_tendril
from tests.support.cli import run_cli
from tests.support.core import stored_rows, vault_of
from tests.support.mcp import mcp_client
from tests.support.webhooks import GitHubSigner

pytestmark = pytest.mark.anyio

CANARIES = (SLACK_TOKEN, TELEGRAM_TOKEN)
WRONG_TOKEN = "xoxb-9999-8888-CanaryWrongTokenZz"


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log line at DEBUG, through the same redaction filter production installs."""
    caplog.set_level(logging.DEBUG)
    install_redaction(caplog.handler)
    return caplog


def assert_no_canary(text: str, where: str) -> None:
    for canary in (*CANARIES, WRONG_TOKEN):
        assert canary not in text, f"a secret leaked into {where}"
        # Also the distinctive tail, in case something truncated the prefix.
        assert canary[-12:] not in text, f"part of a secret leaked into {where}"


async def test_secrets_stay_out_of_responses_logs_tool_results_and_the_database(
    live_tendril: LiveTendril, fakes: Fakes, captured_logs: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")

    headers = {"Authorization": f"Bearer {live_tendril.admin.api_key}"}
    async with httpx.AsyncClient(
        base_url=live_tendril.url, headers=headers, event_hooks={"response": [record]}
    ) as http:
        slack = (await http.post("/api/v1/connections", json={"connectorSlug": "slack"})).json()
        slack_id = slack["connection"]["id"]
        await http.post(f"/api/v1/connections/{slack_id}/credentials", json={"bot_token": WRONG_TOKEN})
        await http.post(f"/api/v1/connections/{slack_id}/credentials", json={"bot_token": SLACK_TOKEN})
        telegram = (await http.post("/api/v1/connections", json={"connectorSlug": "telegram"})).json()
        telegram_id = telegram["connection"]["id"]
        await http.post(f"/api/v1/connections/{telegram_id}/credentials", json={"bot_token": TELEGRAM_TOKEN})
        await http.get("/api/v1/connections")
        await http.get(f"/api/v1/connections/{slack_id}")
        await http.get(f"/connect/{slack_id}")
        await http.post(f"/api/v1/connections/{slack_id}/actions/post_message", json={"parameters": {"x": 1}})
        fakes.slack.rate_limit_next("chat.postMessage", retry_after=60)
        await http.post(
            f"/api/v1/connections/{slack_id}/actions/post_message",
            json={"parameters": {"channel": "#general", "text": "hi"}},
        )
        fakes.telegram.fail_next("getMe", status=500)
        await http.post(f"/api/v1/connections/{telegram_id}/actions/get_me", json={})
        await http.post("/api/v1/connect/telegram", json={"action": "get_me", "token": TELEGRAM_TOKEN})
        await http.post("/api/v1/connect/slack", json={"action": "post_message", "token": WRONG_TOKEN})
        agent_body = {"name": "leaky", "allowedConnectors": ["slack", "telegram"]}
        agent = (await http.post("/api/v1/agents", json=agent_body)).json()

    async with mcp_client(live_tendril.url, agent["apiKey"]) as mcp:
        results = [
            await mcp.call_tool("slack_post_message", {"channel": "#general", "text": "ok"}),
            await mcp.call_tool("slack_post_message", {"channel": "#missing", "text": "404"}),
            await mcp.call_tool("telegram_send_message", {"chat_id": 1, "text": "no such chat"}),
            await mcp.call_tool("telegram_get_me", {}),
        ]
        tools = await mcp.list_tools()

    assert len(seen) == 14
    for line in seen:
        assert_no_canary(line, "an HTTP response")
    for result in results:
        assert_no_canary(result.model_dump_json(), "a tool result")
    assert_no_canary(tools.model_dump_json(), "the tool list")
    assert_no_canary(captured_logs.text, "the log")
    assert any("HTTP Request" in r.getMessage() for r in captured_logs.records), "httpx was not logging"

    async with stored_rows(live_tendril.settings) as store, store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.connections))).mappings().all()
    assert_no_canary(repr(rows), "the database")
    assert {row["credentials"][:3] for row in rows} == {"v1:"}


@pytest.fixture
async def tendril_taking_webhooks(settings: Settings) -> AsyncIterator[Tendril]:
    async with running_tendril(settings.model_copy(update={"webhook_allow_insecure_urls": True})) as tendril:
        yield tendril


async def test_crypto_rotate_reseals_every_sealed_value_with_the_first_key(
    tendril_taking_webhooks: Tendril, settings: Settings, fakes: Fakes
) -> None:
    tendril = tendril_taking_webhooks
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    for slug, token in (("slack", SLACK_TOKEN), ("telegram", TELEGRAM_TOKEN)):
        started = await client.create_connection(slug)
        await client.submit_credentials(started.connection.id, {"bot_token": token})
    # The other sealed values: a webhook endpoint's signing secret, an agent's push secret.
    signer = GitHubSigner()
    github = await client.create_connection("github")
    endpoint = (await client.set_up_webhook(github.connection.id, "github", secrets=signer.secrets)).endpoint
    agent = await client.create_agent("pushed", allowed_connectors=["github"])
    await client.set_agent_delivery(
        agent.agent.id, "https://agent.example.com/jobs", secret="push-secret-0123456789"
    )
    # An outgoing webhook's signing secret and custom headers (sealed separately).
    outgoing = await client.create_webhook(
        "rotated",
        "https://hooks.example/in",
        ["workflow.completed"],
        headers={"Authorization": "Bearer receiver-credential-0123"},
    )
    old_key = settings.master_key.get_secret_value()  # type: ignore[union-attr]
    new_key = generate_key()

    rotate = await run_cli(settings, "crypto", "rotate", TENDRIL_MASTER_KEY=f"{new_key},{old_key}")
    assert rotate.returncode == 0, rotate.stderr
    for line in (
        "connection credentials: re-encrypted 2,",
        "credential objects: re-encrypted 0,",
        "webhook endpoint secrets: re-encrypted 1,",
        "agent delivery secrets: re-encrypted 1,",
        "outgoing webhook secrets: re-encrypted 1,",
        "outgoing webhook headers: re-encrypted 1,",
    ):
        assert line in rotate.stdout
    assert "connection credentials: 2/2" in rotate.stderr  # counted as it goes
    assert "credential objects:" not in rotate.stderr  # none to count

    new_id = Keyring([new_key]).primary_key_id
    async with stored_rows(settings) as store:
        values = SealedValues(store.engine)
        for where in SEALED_COLUMNS:
            assert {sealed.split(":")[1] for _, sealed in await values.all(where)} <= {new_id}, where.what
        assert len(await values.all(SEALED_COLUMNS[0])) == 2

    # With only the new key, Tendril starts (it opens a value of every column at start), every
    # credential still works and the webhook endpoint still verifies signatures.
    only_new = tendril.core.settings.model_copy(update={"master_key": SecretStr(new_key)})
    app = build_app(only_new)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
            http.headers["X-Api-Key"] = owner.api_key
            for connection in await client.connections():
                if connection.connector_slug == "github":
                    continue
                response = await http.post(
                    f"/api/v1/connections/{connection.id}/actions/"
                    + ("list_channels" if connection.connector_slug == "slack" else "get_me"),
                    json={"parameters": {}},
                )
                assert response.status_code == 200, response.text
            delivery = signer.deliver("after-rotation")
            path = f"/api/v1/connectors/webhooks/github/{endpoint.id}"
            answer = await http.post(path, content=delivery.body, headers=delivery.headers)
            assert answer.status_code == 200, answer.text
            # The outgoing webhook's secret still signs, and its headers still open.
            shown = (await http.get(f"/api/v1/webhooks/{outgoing.webhook.id}")).json()
            assert shown["headers"] == {"Authorization": "****"}
        hook = await app.state.core.outgoing.get(UUID(owner.id), UUID(outgoing.webhook.id))
        opened = vault_of(only_new).open(hook.record.id, hook.record.sealed_secret, kind="outgoing_webhook")
        assert opened == {"secret": outgoing.secret}


async def test_a_wrong_master_key_fails_loudly_at_start(
    tendril: Tendril, settings: Settings, fakes: Fakes
) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)
    started = await client.create_connection("slack")
    await client.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})

    wrong = settings.model_copy(update={"master_key": SecretStr(generate_key())})
    app = build_app(wrong)
    from auth.crypto import CryptoError

    with pytest.raises(CryptoError, match="not in TENDRIL_MASTER_KEY"):
        async with app.router.lifespan_context(app):
            pass

    cli = await run_cli(wrong, "db", "upgrade")
    assert cli.returncode == 2
    assert "encryption key problem" in cli.stderr and "not in TENDRIL_MASTER_KEY" in cli.stderr
