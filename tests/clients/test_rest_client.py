"""The Python REST client covers the contract: one method per operation of the OpenAPI document, and
the methods added for it work against a real server (in-process, through the ASGI transport)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from clients.rest import TendrilApiError, TendrilClient
from tests.conftest import TELEGRAM_TOKEN, Fakes, Tendril

pytestmark = pytest.mark.anyio

# The provider's redirect target after consent: a provider calls it, never a client.
NOT_FOR_CLIENTS = {"oauthCallback"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """What is checked here is the client, not the engine."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tendril.db'}"


def client_operations() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, method in inspect.getmembers(TendrilClient, inspect.isfunction):
        operation_id = getattr(method, "operation_id", None)
        if operation_id is not None:
            assert operation_id not in found, (
                f"{operation_id} is called by {found.get(operation_id)} and {name}"
            )
            found[operation_id] = name
    return found


async def test_every_operation_in_the_document_has_a_client_method(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    document = await tendril.client(owner.api_key).openapi()
    documented = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert set(client_operations()) == documented - NOT_FOR_CLIENTS
    assert documented >= NOT_FOR_CLIENTS


async def test_credentials_instances_and_limits_through_the_client(tendril: Tendril, fakes: Fakes) -> None:
    owner = await tendril.new_owner()
    client: TendrilClient = tendril.client(owner.api_key)

    credential = await client.create_credential("Bot", "telegram", {"bot_token": TELEGRAM_TOKEN})
    assert credential.fields == ["bot_token"] and credential.id.startswith("cred_")
    instance = await client.create_connector_instance("Alerts", "telegram", credential.id)
    assert instance.status == "active" and instance.credential_id == credential.id
    connection = await client.connection(instance.id)
    assert connection.credential_id == credential.id
    renamed = await client.update_connection(instance.id, label="Alerts bot")
    assert renamed.label == "Alerts bot"
    assert (await client.oauth_status(instance.id)).status == "active"
    assert (await client.credential(credential.id)).connection_ids == [instance.id]
    assert [c.id for c in await client.credentials()] == [credential.id]
    updated = await client.update_credential(credential.id, description="on-call alerts")
    assert updated.description == "on-call alerts"
    with pytest.raises(TendrilApiError) as refused:
        await client.delete_credential(credential.id)
    assert refused.value.status == 409
    await client.delete_connection(instance.id)
    await client.delete_credential(credential.id)
    assert await client.credentials() == []

    made = await client.create_key("limited", ["read"], rate_limit=5)
    assert made.key.rate_limit == 5
    assert (await client.update_key(made.key.id, rate_limit=None)).rate_limit is None
    agent = await client.create_agent("bot", ["telegram"], tool_call_rate_limit=7)
    assert agent.agent.tool_call_rate_limit == 7
    assert (await client.update_agent(agent.agent.id, tool_call_rate_limit=None)).tool_call_rate_limit is None
    unchanged = await client.update_agent(agent.agent.id, name="bot-2")
    assert unchanged.name == "bot-2" and unchanged.tool_call_rate_limit is None


async def test_files_jobs_and_delivery_through_the_client(tendril: Tendril) -> None:
    owner = await tendril.new_owner()
    client = tendril.client(owner.api_key)

    made = await client.create_file_connector("notes", filename="notes.txt", file_type="text")
    uploaded = await client.upload_file(made.id, b"one\ntwo\nthree\n")
    assert uploaded.status == "active"
    chunk = await client.file_content(made.id, offset=1, limit=1)
    assert chunk.content == "two\n"
    assert [f.id for f in await client.file_connectors()] == [made.id]
    assert (await client.file_connector(made.id)).name == "notes"
    await client.delete_file_connector(made.id)
    assert await client.file_connectors() == []

    jobs = await client.jobs(status="queued")
    assert jobs.jobs == []
    assert await client.webhook_endpoints() == []
    agent = await client.create_agent("pushed", [])
    delivery = await client.set_agent_delivery(agent.agent.id, "https://push.example/jobs")
    assert delivery.delivery_url == "https://push.example/jobs"
    assert (await client.clear_agent_delivery(agent.agent.id)).delivery_url is None
    assert client.oauth_start_url("abc").endswith("/api/v1/connections/oauth/start?connection=abc")
