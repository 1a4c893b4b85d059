"""A typed async client for Tendril's REST API: one method per operation of the OpenAPI document
(each says which with @operation; tests/clients/test_rest_client.py holds them to the document).

async with TendrilClient("http://127.0.0.1:8080", api_key="tdl_...") as tendril:
    started = await tendril.create_connection("slack")
    await tendril.submit_credentials(started.connection.id, {"bot_token": "xoxb-..."})
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

import httpx

from clients.models import (
    Agent,
    ApiKey,
    AuditPage,
    Connection,
    Connector,
    ConnectorInstance,
    CreatedAgent,
    CreatedApiKey,
    CreatedOutgoingWebhook,
    Credential,
    Delivery,
    Execution,
    ExecutionPage,
    ExecutionStarted,
    FileConnector,
    FileContent,
    Job,
    JobList,
    OAuthStatus,
    OutgoingDelivery,
    OutgoingDeliveryPage,
    OutgoingWebhook,
    StartedConnection,
    Trigger,
    WebhookEndpoint,
    WebhookSetup,
    Workflow,
    WorkflowSummary,
)

F = TypeVar("F", bound=Callable[..., Any])


class Unset:
    """An argument left out (as opposed to None, which some PATCH fields take to mean "reset")."""


UNSET = Unset()


def operation(operation_id: str) -> Callable[[F], F]:
    """Marks the method that calls the document's `operation_id`."""

    def mark(method: F) -> F:
        method.operation_id = operation_id  # type: ignore[attr-defined]
        return method

    return mark


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

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = await self._http.request(
            method, path, json=json, params=params, content=content, headers=headers
        )
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
    @operation("listConnectors")
    async def connectors(self, *, available: bool = False) -> list[Connector]:
        params = {"available": "true"} if available else None
        return [
            Connector.model_validate(c)
            for c in await self.request("GET", "/api/v1/connectors", params=params)
        ]

    @operation("createConnection")
    async def create_connection(self, connector_slug: str, *, label: str | None = None) -> StartedConnection:
        body: dict[str, Any] = {"connectorSlug": connector_slug}
        if label is not None:
            body["label"] = label
        return StartedConnection.model_validate(await self.request("POST", "/api/v1/connections", json=body))

    @operation("listConnections")
    async def connections(self) -> list[Connection]:
        return [Connection.model_validate(c) for c in await self.request("GET", "/api/v1/connections")]

    @operation("getConnection")
    async def connection(self, connection_id: str) -> Connection:
        return Connection.model_validate(await self.request("GET", f"/api/v1/connections/{connection_id}"))

    @operation("deleteConnection")
    async def delete_connection(self, connection_id: str) -> None:
        await self.request("DELETE", f"/api/v1/connections/{connection_id}")

    @operation("submitCredentials")
    async def submit_credentials(self, connection_id: str, credentials: dict[str, str]) -> Connection:
        body = await self.request(
            "POST", f"/api/v1/connections/{connection_id}/credentials", json=credentials
        )
        return Connection.model_validate(body["connection"])

    @operation("runConnectionAction")
    async def run_action(self, connection_id: str, action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        body = await self.request(
            "POST", f"/api/v1/connections/{connection_id}/actions/{action}", json={"parameters": parameters}
        )
        return body["data"]

    @operation("updateConnection")
    async def update_connection(
        self, connection_id: str, *, label: str | None = None, config: dict[str, Any] | None = None
    ) -> Connection:
        """`config` is merged into the connection's defaults; a None value removes one."""
        body: dict[str, Any] = {}
        if label is not None:
            body["label"] = label
        if config is not None:
            body["config"] = config
        return Connection.model_validate(
            await self.request("PATCH", f"/api/v1/connections/{connection_id}", json=body)
        )

    @operation("getOauthStatus")
    async def oauth_status(self, connection_id: str) -> OAuthStatus:
        return OAuthStatus.model_validate(
            await self.request("GET", f"/api/v1/connections/{connection_id}/oauth")
        )

    @operation("restartOauth")
    async def restart_oauth(self, connection_id: str) -> OAuthStatus:
        return OAuthStatus.model_validate(
            await self.request("POST", f"/api/v1/connections/{connection_id}/oauth")
        )

    @operation("oauthStart")
    def oauth_start_url(self, connection_id: str) -> str:
        """Where to send a person to approve a pending OAuth connection (a browser page: not fetched)."""
        query = urlencode({"connection": connection_id})
        return f"{self._http.base_url}/api/v1/connections/oauth/start?{query}"

    @operation("runConnectorAction")
    async def run_connector_action(
        self, connector: str, action: str, *, credential_id: str, parameters: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Alloy's shape: the connection named as credentialId; answers {data, has_more, next_cursor}."""
        body = {"credentialId": credential_id, "parameters": parameters or {}}
        return await self.request("POST", f"/api/v1/connectors/{connector}/actions/{action}", json=body)

    # -- credentials and connector instances -----------------------------------------------------
    @operation("createCredential")
    async def create_credential(
        self,
        name: str,
        provider: str,
        data: dict[str, Any],
        *,
        type: str | None = None,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Credential:
        body: dict[str, Any] = {"name": name, "provider": provider, "data": data, "description": description}
        if type is not None:
            body["type"] = type
        if metadata is not None:
            body["metadata"] = metadata
        return Credential.model_validate(await self.request("POST", "/api/v1/credentials", json=body))

    @operation("listCredentials")
    async def credentials(self) -> list[Credential]:
        return [Credential.model_validate(c) for c in await self.request("GET", "/api/v1/credentials")]

    @operation("getCredential")
    async def credential(self, credential_id: str) -> Credential:
        return Credential.model_validate(await self.request("GET", f"/api/v1/credentials/{credential_id}"))

    @operation("updateCredential")
    async def update_credential(
        self,
        credential_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Credential:
        """New `data` rotates the credential in every connection it backs."""
        changes = {"name": name, "description": description, "data": data, "metadata": metadata}
        body = {key: value for key, value in changes.items() if value is not None}
        return Credential.model_validate(
            await self.request("PATCH", f"/api/v1/credentials/{credential_id}", json=body)
        )

    @operation("deleteCredential")
    async def delete_credential(self, credential_id: str) -> None:
        await self.request("DELETE", f"/api/v1/credentials/{credential_id}")

    @operation("createConnectorInstance")
    async def create_connector_instance(
        self, name: str, type: str, credential_id: str, *, config: dict[str, Any] | None = None
    ) -> ConnectorInstance:
        body: dict[str, Any] = {"name": name, "type": type, "credentialId": credential_id}
        if config is not None:
            body["config"] = config
        return ConnectorInstance.model_validate(await self.request("POST", "/api/v1/connectors", json=body))

    @operation("connectOnce")
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
    @operation("createAgent")
    async def create_agent(
        self, name: str, allowed_connectors: list[str], *, tool_call_rate_limit: int | None = None
    ) -> CreatedAgent:
        body: dict[str, Any] = {"name": name, "allowedConnectors": allowed_connectors}
        if tool_call_rate_limit is not None:
            body["toolCallRateLimit"] = tool_call_rate_limit
        return CreatedAgent.model_validate(await self.request("POST", "/api/v1/agents", json=body))

    @operation("listAgents")
    async def agents(self) -> list[Agent]:
        return [Agent.model_validate(a) for a in await self.request("GET", "/api/v1/agents")]

    @operation("getAgent")
    async def agent(self, agent_id: str) -> Agent:
        return Agent.model_validate(await self.request("GET", f"/api/v1/agents/{agent_id}"))

    @operation("updateAgent")
    async def update_agent(
        self,
        agent_id: str,
        *,
        name: str | None = None,
        allowed_connectors: list[str] | None = None,
        tool_call_rate_limit: int | Unset | None = UNSET,
    ) -> Agent:
        """`tool_call_rate_limit=None` puts the agent back on the server's default."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if allowed_connectors is not None:
            body["allowedConnectors"] = allowed_connectors
        if not isinstance(tool_call_rate_limit, Unset):
            body["toolCallRateLimit"] = tool_call_rate_limit
        return Agent.model_validate(await self.request("PATCH", f"/api/v1/agents/{agent_id}", json=body))

    @operation("rotateAgentKey")
    async def rotate_agent_key(self, agent_id: str) -> CreatedAgent:
        """A new MCP key for the same agent (in `api_key`, shown once); the old key stops working."""
        return CreatedAgent.model_validate(await self.request("POST", f"/api/v1/agents/{agent_id}/key"))

    @operation("deleteAgent")
    async def delete_agent(self, agent_id: str) -> None:
        await self.request("DELETE", f"/api/v1/agents/{agent_id}")

    @operation("createKey")
    async def create_key(
        self, name: str, permissions: list[str] | None = None, *, rate_limit: int | None = None
    ) -> CreatedApiKey:
        body: dict[str, Any] = {"name": name}
        if permissions is not None:
            body["permissions"] = permissions
        if rate_limit is not None:
            body["rateLimit"] = rate_limit
        return CreatedApiKey.model_validate(await self.request("POST", "/api/v1/keys", json=body))

    @operation("listKeys")
    async def keys(self) -> list[ApiKey]:
        return [ApiKey.model_validate(k) for k in await self.request("GET", "/api/v1/keys")]

    @operation("revokeKey")
    async def revoke_key(self, key_id: str) -> None:
        await self.request("DELETE", f"/api/v1/keys/{key_id}")

    @operation("updateKey")
    async def update_key(
        self, key_id: str, *, name: str | None = None, rate_limit: int | Unset | None = UNSET
    ) -> ApiKey:
        """`rate_limit=None` puts the key back on the server's default."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if not isinstance(rate_limit, Unset):
            body["rateLimit"] = rate_limit
        return ApiKey.model_validate(await self.request("PATCH", f"/api/v1/keys/{key_id}", json=body))

    # -- provider events and jobs ----------------------------------------------------------------
    @operation("setUpWebhook")
    async def set_up_webhook(
        self,
        connection_id: str,
        provider: str,
        *,
        secrets: dict[str, str] | None = None,
        agents: list[str] | None = None,
        registration: bool | dict[str, Any] | None = None,
    ) -> WebhookSetup:
        options = {"secrets": secrets, "agents": agents, "registration": registration}
        body = {"provider": provider, **{k: v for k, v in options.items() if v is not None}}
        return WebhookSetup.model_validate(
            await self.request("POST", f"/api/v1/connections/{connection_id}/webhooks", json=body)
        )

    @operation("listWebhookEndpoints")
    async def webhook_endpoints(self) -> list[WebhookEndpoint]:
        body = await self.request("GET", "/api/v1/webhook-endpoints")
        return [WebhookEndpoint.model_validate(e) for e in body["endpoints"]]

    @operation("deleteWebhookEndpoint")
    async def delete_webhook_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """Answers what happened at the provider (`provider.removed`, `provider.how`)."""
        return await self.request("DELETE", f"/api/v1/webhook-endpoints/{endpoint_id}")

    @operation("listJobs")
    async def jobs(
        self, *, status: str | None = None, agent: str | None = None, event_key: str | None = None
    ) -> JobList:
        filters = {"status": status, "agent": agent, "eventKey": event_key}
        params = {k: v for k, v in filters.items() if v is not None}
        return JobList.model_validate(await self.request("GET", "/api/v1/jobs", params=params))

    @operation("listAuditEvents")
    async def audit(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        agent: str | None = None,
        connection: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditPage:
        """A page of the owner's audit trail, newest first; `next_cursor` fetches the next page."""
        filters: dict[str, Any] = {
            "since": since,
            "until": until,
            "agent": agent,
            "connection": connection,
            "kind": kind,
            "limit": limit,
            "cursor": cursor,
        }
        params = {k: v for k, v in filters.items() if v is not None}
        return AuditPage.model_validate(await self.request("GET", "/api/v1/audit", params=params))

    # -- executions ------------------------------------------------------------------------------
    @operation("executeWorkflow")
    async def execute_workflow(
        self, workflow_id: str, input: dict[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> ExecutionStarted:
        """Start an execution; the same `idempotency_key` answers the execution it started."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        body = await self.request(
            "POST", f"/api/v1/workflows/{workflow_id}/execute", json={"input": input or {}}, headers=headers
        )
        return ExecutionStarted.model_validate(body)

    @operation("listExecutions")
    async def executions(
        self,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """A page of the owner's executions, newest first; `next_cursor` fetches the next page."""
        filters = {"workflowId": workflow_id, "status": status, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in filters.items() if v is not None}
        return ExecutionPage.model_validate(await self.request("GET", "/api/v1/executions", params=params))

    @operation("getExecution")
    async def execution(self, execution_id: str) -> Execution:
        return Execution.model_validate(await self.request("GET", f"/api/v1/executions/{execution_id}"))

    @operation("actOnExecution")
    async def cancel_execution(self, execution_id: str) -> Execution:
        body = await self.request("POST", f"/api/v1/executions/{execution_id}", json={"action": "cancel"})
        return Execution.model_validate(body)

    @operation("retryJob")
    async def retry_job(self, job_id: str) -> Job:
        return Job.model_validate((await self.request("POST", f"/api/v1/jobs/{job_id}/retry"))["job"])

    @operation("setAgentDelivery")
    async def set_agent_delivery(self, agent_id: str, url: str, *, secret: str | None = None) -> Delivery:
        body = {"url": url} if secret is None else {"url": url, "secret": secret}
        return Delivery.model_validate(
            await self.request("PUT", f"/api/v1/agents/{agent_id}/delivery", json=body)
        )

    @operation("clearAgentDelivery")
    async def clear_agent_delivery(self, agent_id: str) -> Delivery:
        return Delivery.model_validate(await self.request("DELETE", f"/api/v1/agents/{agent_id}/delivery"))

    # -- outgoing webhooks ---------------------------------------------------------------------
    @operation("createWebhook")
    async def create_webhook(
        self,
        name: str,
        url: str,
        events: list[str],
        *,
        headers: dict[str, str] | None = None,
        max_attempts: int | None = None,
        backoff_ms: int | None = None,
    ) -> CreatedOutgoingWebhook:
        """An outgoing webhook; the answer's `secret` (its signing secret) is shown only this once."""
        body: dict[str, Any] = {"name": name, "url": url, "events": events}
        if headers is not None:
            body["headers"] = headers
        policy = {"maxAttempts": max_attempts, "backoffMs": backoff_ms}
        if any(v is not None for v in policy.values()):
            body["retryPolicy"] = {k: v for k, v in policy.items() if v is not None}
        return CreatedOutgoingWebhook.model_validate(
            await self.request("POST", "/api/v1/webhooks", json=body)
        )

    @operation("listWebhooks")
    async def webhooks(self) -> list[OutgoingWebhook]:
        body = await self.request("GET", "/api/v1/webhooks")
        return [OutgoingWebhook.model_validate(w) for w in body["webhooks"]]

    @operation("getWebhook")
    async def webhook(self, webhook_id: str) -> OutgoingWebhook:
        return OutgoingWebhook.model_validate(await self.request("GET", f"/api/v1/webhooks/{webhook_id}"))

    @operation("updateWebhook")
    async def update_webhook(
        self,
        webhook_id: str,
        *,
        name: str | None = None,
        url: str | None = None,
        events: list[str] | None = None,
        headers: dict[str, str] | Unset | None = UNSET,
        max_attempts: int | None = None,
        backoff_ms: int | None = None,
        active: bool | None = None,
    ) -> OutgoingWebhook:
        """Change what is given; `headers` replaces the whole set (None clears it)."""
        body: dict[str, Any] = {
            k: v
            for k, v in {"name": name, "url": url, "events": events, "active": active}.items()
            if v is not None
        }
        if not isinstance(headers, Unset):
            body["headers"] = headers
        policy = {"maxAttempts": max_attempts, "backoffMs": backoff_ms}
        if any(v is not None for v in policy.values()):
            body["retryPolicy"] = {k: v for k, v in policy.items() if v is not None}
        return OutgoingWebhook.model_validate(
            await self.request("PATCH", f"/api/v1/webhooks/{webhook_id}", json=body)
        )

    @operation("deleteWebhook")
    async def delete_webhook(self, webhook_id: str) -> None:
        await self.request("DELETE", f"/api/v1/webhooks/{webhook_id}")

    @operation("listWebhookDeliveries")
    async def webhook_deliveries(
        self,
        webhook_id: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> OutgoingDeliveryPage:
        """A page of the webhook's deliveries, newest first; `next_cursor` fetches the next page."""
        filters: dict[str, Any] = {"status": status, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in filters.items() if v is not None}
        return OutgoingDeliveryPage.model_validate(
            await self.request("GET", f"/api/v1/webhooks/{webhook_id}/deliveries", params=params)
        )

    @operation("redeliverWebhookDelivery")
    async def redeliver(self, webhook_id: str, delivery_id: str) -> OutgoingDelivery:
        """The same body again, as a new delivery."""
        path = f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
        return OutgoingDelivery.model_validate((await self.request("POST", path))["delivery"])

    # -- files -----------------------------------------------------------------------------------
    @operation("listFileConnectors")
    async def file_connectors(self) -> list[FileConnector]:
        body = await self.request("GET", "/connectors")
        return [FileConnector.model_validate(c) for c in body["connectors"]]

    @operation("createFileConnector")
    async def create_file_connector(
        self, name: str, type: str = "local_file", **options: Any
    ) -> FileConnector:
        """local_file: filename, file_type, encoding; gcs: config={"gcs_url": ...}, credentials."""
        body = {"name": name, "type": type, **options}
        return FileConnector.model_validate(await self.request("POST", "/connectors", json=body))

    @operation("getFileConnector")
    async def file_connector(self, ref: str) -> FileConnector:
        return FileConnector.model_validate(await self.request("GET", f"/connectors/{ref}"))

    @operation("uploadFileContent")
    async def upload_file(self, ref: str, content: bytes) -> FileConnector:
        return FileConnector.model_validate(
            await self.request("POST", f"/connectors/{ref}:upload", content=content)
        )

    @operation("getFileContent")
    async def file_content(self, ref: str, **range: int | str) -> FileContent:
        """By lines (offset, limit) or bytes (bytes_start, bytes_end); gcs also takes path."""
        return FileContent.model_validate(
            await self.request("GET", f"/connectors/{ref}/content", params=range)
        )

    @operation("deleteFileConnector")
    async def delete_file_connector(self, ref: str) -> None:
        await self.request("DELETE", f"/connectors/{ref}")

    # -- workflows -------------------------------------------------------------------------------
    @operation("createWorkflow")
    async def create_workflow(
        self,
        name: str,
        definition: dict[str, Any],
        *,
        description: str | None = None,
        is_public: bool = False,
    ) -> Workflow:
        """A workflow; a definition the server cannot run is a 400 naming the step at fault."""
        body: dict[str, Any] = {"name": name, "definition": definition, "isPublic": is_public}
        if description is not None:
            body["description"] = description
        return Workflow.model_validate(await self.request("POST", "/api/v1/workflows", json=body))

    @operation("listWorkflows")
    async def workflows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> list[WorkflowSummary]:
        """One page, newest first (the server's Link header names the next page's cursor)."""
        params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        body = await self.request("GET", "/api/v1/workflows", params=params or None)
        return [WorkflowSummary.model_validate(w) for w in body]

    @operation("getWorkflow")
    async def workflow(self, workflow_id: str) -> Workflow:
        return Workflow.model_validate(await self.request("GET", f"/api/v1/workflows/{workflow_id}"))

    @operation("updateWorkflow")
    async def update_workflow(
        self,
        workflow_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        is_public: bool | None = None,
        definition: dict[str, Any] | None = None,
    ) -> Workflow:
        """What is given replaces what was; a new definition is checked whole."""
        body = {
            key: value
            for key, value in (
                ("name", name),
                ("description", description),
                ("isPublic", is_public),
                ("definition", definition),
            )
            if value is not None
        }
        return Workflow.model_validate(
            await self.request("PATCH", f"/api/v1/workflows/{workflow_id}", json=body)
        )

    @operation("deleteWorkflow")
    async def delete_workflow(self, workflow_id: str) -> None:
        await self.request("DELETE", f"/api/v1/workflows/{workflow_id}")

    # -- workflow triggers ------------------------------------------------------------------------
    @operation("createTrigger")
    async def create_trigger(
        self,
        workflow_id: str,
        kind: Literal["event", "schedule"],
        *,
        event_key: str | None = None,
        endpoint_id: str | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        input: dict[str, Any] | None = None,
        active: bool = True,
    ) -> Trigger:
        """An event trigger (event_key, optionally endpoint_id) or a schedule (cron, timezone, input)."""
        fields = {
            "eventKey": event_key,
            "endpointId": endpoint_id,
            "cron": cron,
            "timezone": timezone,
            "input": input,
        }
        body = {"kind": kind, "active": active, **{k: v for k, v in fields.items() if v is not None}}
        return Trigger.model_validate(
            await self.request("POST", f"/api/v1/workflows/{workflow_id}/triggers", json=body)
        )

    @operation("listTriggers")
    async def triggers(self, workflow_id: str) -> list[Trigger]:
        body = await self.request("GET", f"/api/v1/workflows/{workflow_id}/triggers")
        return [Trigger.model_validate(t) for t in body["triggers"]]

    @operation("getTrigger")
    async def trigger(self, workflow_id: str, trigger_id: str) -> Trigger:
        body = await self.request("GET", f"/api/v1/workflows/{workflow_id}/triggers/{trigger_id}")
        return Trigger.model_validate(body)

    @operation("updateTrigger")
    async def update_trigger(self, workflow_id: str, trigger_id: str, **changes: Any) -> Trigger:
        """PATCH with the API's field names (eventKey, endpointId, cron, timezone, input, active);
        None clears endpointId, timezone and input."""
        body = await self.request(
            "PATCH", f"/api/v1/workflows/{workflow_id}/triggers/{trigger_id}", json=changes
        )
        return Trigger.model_validate(body)

    @operation("deleteTrigger")
    async def delete_trigger(self, workflow_id: str, trigger_id: str) -> None:
        await self.request("DELETE", f"/api/v1/workflows/{workflow_id}/triggers/{trigger_id}")

    # -- the contract ----------------------------------------------------------------------------
    @operation("getOpenApiDocument")
    async def openapi(self) -> dict[str, Any]:
        return await self.request("GET", "/api/v1/openapi")
