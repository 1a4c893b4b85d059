"""A typed async client for Tendril's REST API.

async with TendrilClient("http://127.0.0.1:8080", api_key="tdl_...") as tendril:
    started = await tendril.create_connection("slack")
    await tendril.submit_credentials(started.connection.id, {"bot_token": "xoxb-..."})
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from clients.models import (
    Agent,
    ApiKey,
    Connection,
    Connector,
    CreatedAgent,
    CreatedApiKey,
    StartedConnection,
)


class TendrilApiError(Exception):
    """A non-2xx answer: `status`, the API's `code` and its readable `message`."""

    def __init__(self, status: int, code: str, message: str, body: Any) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class TendrilClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
            timeout=timeout,
        )

    async def __aenter__(self) -> TendrilClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        response = await self._http.request(method, path, json=json, params=params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            error = body if isinstance(body, dict) else {}
            raise TendrilApiError(
                response.status_code,
                str(error.get("code", "ERROR")),
                str(error.get("error", response.reason_phrase)),
                body,
            )
        return body

    # -- catalog and connections ---------------------------------------------------------------
    async def connectors(self, *, available: bool = False) -> list[Connector]:
        params = {"available": "true"} if available else None
        return [
            Connector.model_validate(c)
            for c in await self.request("GET", "/api/v1/connectors", params=params)
        ]

    async def create_connection(self, connector_slug: str, *, label: str | None = None) -> StartedConnection:
        body: dict[str, Any] = {"connectorSlug": connector_slug}
        if label is not None:
            body["label"] = label
        return StartedConnection.model_validate(await self.request("POST", "/api/v1/connections", json=body))

    async def connections(self) -> list[Connection]:
        return [Connection.model_validate(c) for c in await self.request("GET", "/api/v1/connections")]

    async def connection(self, connection_id: str) -> Connection:
        return Connection.model_validate(await self.request("GET", f"/api/v1/connections/{connection_id}"))

    async def delete_connection(self, connection_id: str) -> None:
        await self.request("DELETE", f"/api/v1/connections/{connection_id}")

    async def submit_credentials(self, connection_id: str, credentials: dict[str, str]) -> Connection:
        body = await self.request(
            "POST", f"/api/v1/connections/{connection_id}/credentials", json=credentials
        )
        return Connection.model_validate(body["connection"])

    async def run_action(self, connection_id: str, action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        body = await self.request(
            "POST", f"/api/v1/connections/{connection_id}/actions/{action}", json={"parameters": parameters}
        )
        return body["data"]

    async def connect_once(
        self, connector: str, action: str, *, token: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A one-shot call with the credential in the request: the token is used once and never stored."""
        return await self.request(
            "POST",
            f"/api/v1/connect/{connector}",
            json={"action": action, "token": token, "params": params or {}},
        )

    # -- agents and keys -----------------------------------------------------------------------
    async def create_agent(self, name: str, allowed_connectors: list[str]) -> CreatedAgent:
        body = {"name": name, "allowedConnectors": allowed_connectors}
        return CreatedAgent.model_validate(await self.request("POST", "/api/v1/agents", json=body))

    async def agents(self) -> list[Agent]:
        return [Agent.model_validate(a) for a in await self.request("GET", "/api/v1/agents")]

    async def agent(self, agent_id: str) -> Agent:
        return Agent.model_validate(await self.request("GET", f"/api/v1/agents/{agent_id}"))

    async def update_agent(
        self, agent_id: str, *, name: str | None = None, allowed_connectors: list[str] | None = None
    ) -> Agent:
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if allowed_connectors is not None:
            body["allowedConnectors"] = allowed_connectors
        return Agent.model_validate(await self.request("PATCH", f"/api/v1/agents/{agent_id}", json=body))

    async def delete_agent(self, agent_id: str) -> None:
        await self.request("DELETE", f"/api/v1/agents/{agent_id}")

    async def create_key(self, name: str, permissions: list[str] | None = None) -> CreatedApiKey:
        body: dict[str, Any] = {"name": name}
        if permissions is not None:
            body["permissions"] = permissions
        return CreatedApiKey.model_validate(await self.request("POST", "/api/v1/keys", json=body))

    async def keys(self) -> list[ApiKey]:
        return [ApiKey.model_validate(k) for k in await self.request("GET", "/api/v1/keys")]

    async def revoke_key(self, key_id: str) -> None:
        await self.request("DELETE", f"/api/v1/keys/{key_id}")
