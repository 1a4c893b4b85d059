"""Two owners for the isolation matrix: Alice, with one of everything, and Bob, who must never see
or touch any of it. Every label Alice gives carries SENTINEL, so a leak is easy to spot."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import TELEGRAM_TOKEN, Owner, Tendril
from tests.support.webhooks import GitHubSigner

SENTINEL = "AliceSentinel"
OUTGOING_HEADER_SECRET = "alice-receiver-credential-Canary-5e1"


@dataclass
class World:
    tendril: Tendril
    alice: Owner
    bob: Owner
    keys: dict[str, str]  # Alice's keys by the permissions they hold: "read", "write", "execute", "basic"
    agent_key: str  # Alice's agent, allowed telegram, github and local_file
    ids: dict[str, str]  # Alice's things by kind: connection, pending, agent, key, endpoint, job, file,
    # credential and the connector instance made from it, an outgoing webhook and one of its deliveries
    secrets: list[str] = field(default_factory=list)  # what must never reach Bob

    def alice_http(self) -> httpx.AsyncClient:
        http = self.tendril.raw()
        http.headers["X-Api-Key"] = self.alice.api_key
        return http

    async def alice_state(self) -> dict[str, Any]:
        """Everything of Alice's that a request could change, as she sees it."""
        async with self.alice_http() as http:
            state: dict[str, Any] = {}
            for name, path in (
                ("connections", "/api/v1/connections"),
                ("agents", "/api/v1/agents"),
                ("keys", "/api/v1/keys"),
                ("endpoints", "/api/v1/webhook-endpoints"),
                ("jobs", "/api/v1/jobs"),
                ("files", "/connectors"),
                ("credentials", "/api/v1/credentials"),
                ("workflows", "/api/v1/workflows"),
                ("outgoing webhooks", "/api/v1/webhooks"),
                ("executions", "/api/v1/executions"),
            ):
                state[name] = (await http.get(path)).json()
            for hook in state["outgoing webhooks"]["webhooks"]:  # which deliveries exist, not how they fare
                listed = await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
                state[f"deliveries of {hook['id']}"] = [d["id"] for d in listed.json()["deliveries"]]
            for workflow in state["workflows"]:  # definitions too, which the list leaves out
                state[f"workflow {workflow['id']}"] = (
                    await http.get(f"/api/v1/workflows/{workflow['id']}")
                ).json()
                state[f"triggers of {workflow['id']}"] = (
                    await http.get(f"/api/v1/workflows/{workflow['id']}/triggers")
                ).json()
            for item in state["keys"]:
                item.pop("lastUsedAt", None)  # using a key is not changing it
            return state

    def leaked(self, text: str) -> list[str]:
        """Which of Alice's identifiers or secrets appear in `text`."""
        found = [value for value in (SENTINEL, *self.ids.values(), *self.secrets) if value and value in text]
        return found


async def build_world(tendril: Tendril) -> World:
    alice = await tendril.new_owner()
    bob = await tendril.new_owner()
    async with tendril.raw() as http:
        http.headers["X-Api-Key"] = alice.api_key
        active = (
            await http.post(
                "/api/v1/connections", json={"connectorSlug": "telegram", "label": f"{SENTINEL} Telegram"}
            )
        ).json()
        connection = active["connection"]["id"]
        await http.post(f"/api/v1/connections/{connection}/credentials", json={"bot_token": TELEGRAM_TOKEN})
        pending = (
            await http.post(
                "/api/v1/connections", json={"connectorSlug": "slack", "label": f"{SENTINEL} Slack"}
            )
        ).json()
        github = (
            await http.post(
                "/api/v1/connections", json={"connectorSlug": "github", "label": f"{SENTINEL} GitHub"}
            )
        ).json()
        agent = (
            await http.post(
                "/api/v1/agents",
                json={"name": f"{SENTINEL}-agent", "allowedConnectors": ["telegram", "github", "local_file"]},
            )
        ).json()
        keys = {}
        for name, permissions in (
            ("read", ["read"]),
            ("write", ["write"]),
            ("execute", ["execute"]),
            ("basic", ["read", "write", "execute"]),
        ):
            made = (
                await http.post(
                    "/api/v1/keys", json={"name": f"{SENTINEL}-{name}", "permissions": permissions}
                )
            ).json()
            keys[name] = made["apiKey"]
        extra_key = made["key"]["id"]
        signer = GitHubSigner()
        hooked = (
            await http.post(
                f"/api/v1/connections/{github['connection']['id']}/webhooks",
                json={"provider": "github", "secrets": signer.secrets},
            )
        ).json()
        endpoint = hooked["endpoint"]
        delivery = signer.deliver(f"{SENTINEL}-delivery")
        path = endpoint["url"].split("hooks.tendril.test", 1)[1]
        assert (await http.post(path, content=delivery.body, headers=delivery.headers)).status_code == 200
        [job] = (await http.get("/api/v1/jobs")).json()["jobs"]
        made_file = (
            await http.post("/connectors", json={"name": f"{SENTINEL} File", "type": "local_file"})
        ).json()
        await http.post(
            f"/connectors/{made_file['id']}:upload", content=f"{SENTINEL} file content\n".encode()
        )
        credential = (
            await http.post(
                "/api/v1/credentials",
                json={
                    "name": f"{SENTINEL} credential",
                    "provider": "telegram",
                    "data": {"bot_token": TELEGRAM_TOKEN},
                },
            )
        ).json()
        instance = (
            await http.post(
                "/api/v1/connectors",
                json={"name": f"{SENTINEL} instance", "type": "telegram", "credentialId": credential["id"]},
            )
        ).json()
        workflow = (
            await http.post(
                "/api/v1/workflows",
                json={
                    "name": f"{SENTINEL} workflow",
                    "description": f"{SENTINEL} steps",
                    "definition": {
                        "steps": [
                            {
                                "name": "notify",
                                "type": "action",
                                "config": {
                                    "connectionId": connection,
                                    "action": "send_message",
                                    "parameters": {"chat_id": 1, "text": f"{SENTINEL} {{{{ input.text }}}}"},
                                },
                            }
                        ]
                    },
                    "isPublic": True,
                },
            )
        ).json()
        started = (
            await http.post(f"/api/v1/workflows/{workflow['id']}/execute", json={"input": {"text": "hi"}})
        ).json()
        # Finished before the matrix looks, so that its status stays put while Bob probes.
        await tendril.core.executions.engine.wait(uuid.UUID(started["executionId"]))
        # Paused, so that nothing the matrix sends starts it (Bob resuming it would show).
        trigger = (
            await http.post(
                f"/api/v1/workflows/{workflow['id']}/triggers",
                json={
                    "kind": "event",
                    "eventKey": "github.issues.opened",
                    "endpointId": endpoint["id"],
                    "active": False,
                },
            )
        ).json()
        outgoing = (
            await http.post(
                "/api/v1/webhooks",
                json={
                    "name": f"{SENTINEL} outgoing",
                    "url": "https://alice-hooks.example/in",
                    "events": ["workflow.completed"],
                    "headers": {"Authorization": f"Bearer {OUTGOING_HEADER_SECRET}"},
                },
            )
        ).json()
        await tendril.core.outgoing.announce(
            uuid.UUID(alice.id), "workflow.completed", {"by": SENTINEL}, dedupe_key=f"{SENTINEL}-event"
        )
        [outgoing_delivery] = (
            await http.get(f"/api/v1/webhooks/{outgoing['webhook']['id']}/deliveries")
        ).json()["deliveries"]
    ids = {
        "connection": connection,
        "credential": credential["id"],
        "instance": instance["id"],
        "pending": pending["connection"]["id"],
        "agent": agent["agent"]["id"],
        "key": extra_key,
        "endpoint": endpoint["id"],
        "job": job["id"],
        "workflow": workflow["id"],
        "execution": started["executionId"],
        "trigger": trigger["id"],
        "file": made_file["id"],
        "file_connection": made_file["connection_id"],
        "outgoing_webhook": outgoing["webhook"]["id"],
        "outgoing_delivery": outgoing_delivery["id"],
    }
    secrets = [
        alice.api_key,
        *keys.values(),
        agent["apiKey"],
        TELEGRAM_TOKEN,
        signer.secrets["secret"],
        outgoing["secret"],
        OUTGOING_HEADER_SECRET,
    ]
    return World(tendril, alice, bob, keys, agent["apiKey"], ids, secrets)


def new_id() -> str:
    return str(uuid.uuid4())
