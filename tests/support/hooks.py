"""A Tendril taking provider webhooks: the fixture, and an owner with an agent and an endpoint
ready to receive one provider's signed deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import httpx

from tests.conftest import TELEGRAM_TOKEN, WEBHOOK_BASE, WEBHOOK_LIMIT, Fakes, Tendril
from tests.support.webhooks import Signer

BASE, LIMIT = WEBHOOK_BASE, WEBHOOK_LIMIT
CONNECTOR_OF = {"twilio": "http", "whatsapp": "http"}  # webhook-only providers hang off any connection


@dataclass
class Hooked:
    tendril: Tendril
    api: httpx.AsyncClient
    owner_id: UUID
    agent_id: str
    signer: Signer
    path: str

    async def post(self, delivery_body: bytes, headers: dict[str, str], query: str = "") -> httpx.Response:
        return await self.api.post(self.path + query, content=delivery_body, headers=headers)

    async def __aenter__(self) -> Hooked:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.api.aclose()

    async def jobs(self) -> list[dict[str, object]]:
        return (await self.api.get("/api/v1/jobs")).json()["jobs"]


async def hook_up(tendril: Tendril, signer: Signer, fakes: Fakes) -> Hooked:
    owner = await tendril.new_owner()
    owner_id = UUID(owner.id)
    api = tendril.raw()
    api.headers["X-Api-Key"] = owner.api_key
    slug = CONNECTOR_OF.get(signer.provider, signer.provider)
    connections = tendril.core.connections
    connection, _ = await connections.start(owner_id, tendril.core.catalog[slug], label=slug)
    if signer.provider == "telegram":
        await connections.submit_credentials(owner_id, connection.id, {"bot_token": TELEGRAM_TOKEN})
    made = await api.post("/api/v1/agents", json={"name": "listener", "allowedConnectors": [signer.provider]})
    assert made.status_code == 201, made.text
    body = {"provider": signer.provider, "secrets": signer.secrets}
    created = await api.post(f"/api/v1/connections/{connection.id}/webhooks", json=body)
    assert created.status_code == 201, created.text
    endpoint = created.json()["endpoint"]
    assert endpoint["url"] == f"{BASE}/api/v1/connectors/webhooks/{signer.provider}/{endpoint['id']}"
    if signer.provider == "telegram":
        registered = fakes.telegram.webhooks[TELEGRAM_TOKEN]
        assert registered["url"] == endpoint["url"] and created.json()["setup"]["registered"] is True
        signer.secrets = {"secret_token": registered["secret_token"]}
    signer.url = endpoint["url"]
    path = f"/api/v1/connectors/webhooks/{signer.provider}/{endpoint['id']}"
    return Hooked(tendril, api, owner_id, made.json()["agent"]["id"], signer, path)
