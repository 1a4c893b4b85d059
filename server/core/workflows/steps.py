"""What each step type does, run inside the execution workflow (engine.py) as a DBOS step.

- `action`: a connector action on one of the owner's connections (`connectionId`, or `connector`
  plus an optional `label`), through Connections.run: the same gating, credential opening, refresh,
  error mapping and audit as a tool call. An execution an agent started may use only connectors on
  the agent's allowedConnectors. An action that takes an `idempotency_key` (Stripe's creates) gets
  the step's key unless the config sets one.
- `http_request`: `{method, url, headers?, body?}` sent by the http connector's own action with no
  credential, so through the same egress guard (no internal addresses unless the operator opened
  them with TENDRIL_HTTP_ALLOWED_HOSTS), redirect rules and limits; it carries the step's
  `Idempotency-Key`. A 4xx or 5xx answer fails the step.
- `delay`: `{seconds}` (DBOS's durable sleep, in engine.py).
- `condition`: `{if, else?, skip?}`: when the expression is false, `else` says `stop` (the default:
  the execution completes here) or `skip` (the later steps named in `skip` are skipped).

Every config is rendered with the templates (templates.py) against {input, steps: {name: {output}}}
first. A failure is StepFailed(code, message), with the codes the API uses for the same errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import httpx

from connectors import ActionRunner, Catalog
from connectors.errors import ConnectorError
from server.core.audit import outcome_of
from server.core.connections import Connections
from server.core.errors import DomainError
from server.core.identity import Identity
from server.core.workflows.engine import StepFailed
from server.core.workflows.templates import evaluate, render
from storage.repositories import ConnectionRecord, ConnectionStatus

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_DELAY_SECONDS = 30 * 24 * 3600


def _where(step: Mapping[str, Any]) -> str:
    return f"step '{step['name']}'"


class Steps:
    def __init__(
        self, *, connections: Connections, identity: Identity, catalog: Catalog, runner: ActionRunner
    ) -> None:
        self._connections = connections
        self._identity = identity
        self._catalog = catalog
        self._runner = runner

    async def run(
        self, spec: Mapping[str, Any], step: Mapping[str, Any], context: Mapping[str, Any], key: str
    ) -> Any:
        try:
            config = render(step.get("config") or {}, context, _where(step), "config")
            if not isinstance(config, dict):
                raise StepFailed("invalid_input", f"{_where(step)}: config must be an object")
            kind = step["type"]
            if kind == "action":
                return await self._action(spec, step, config, key)
            if kind == "http_request":
                return await self._http_request(step, config, key)
            if kind == "condition":
                return self._condition(step, config, context)
            raise StepFailed("invalid_input", f"{_where(step)}: unknown step type {kind!r}")
        except StepFailed:
            raise
        except ConnectorError as error:
            raise StepFailed(error.code, error.message) from None
        except DomainError as error:
            raise StepFailed(outcome_of(error), error.message) from None
        except Exception as error:
            logger.exception("workflow step %s failed unexpectedly", step.get("name"))
            raise StepFailed("internal_error", f"{_where(step)} failed: {type(error).__name__}") from None

    def delay_seconds(self, step: Mapping[str, Any], context: Mapping[str, Any]) -> float:
        try:
            config = render(step.get("config") or {}, context, _where(step), "config")
        except DomainError as error:
            raise StepFailed(outcome_of(error), error.message) from None
        seconds = config.get("seconds") if isinstance(config, dict) else None
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= MAX_DELAY_SECONDS
        ):
            raise StepFailed(
                "invalid_input", f"{_where(step)}: seconds must be a number from 0 to {MAX_DELAY_SECONDS}"
            )
        return float(seconds)

    # -- action ----------------------------------------------------------------------------------------
    async def _action(
        self, spec: Mapping[str, Any], step: Mapping[str, Any], config: dict[str, Any], key: str
    ) -> Any:
        owner_id = UUID(spec["ownerId"])
        connection = await self._connection(owner_id, step, config)
        if spec.get("agentId"):
            agent = await self._identity.agent(owner_id, UUID(spec["agentId"]))
            if connection.connector_slug not in agent.allowed_connectors:
                raise StepFailed(
                    "forbidden",
                    f"{_where(step)}: the agent that started this execution may not use "
                    f"{connection.connector_slug}",
                )
        connector = self._catalog[connection.connector_slug]
        action = connector.find_action(str(config.get("action") or ""))
        if action is None:
            raise StepFailed("invalid_input", f"{_where(step)}: unknown action {config.get('action')!r}")
        params = config.get("parameters") or {}
        if not isinstance(params, dict):
            raise StepFailed("invalid_input", f"{_where(step)}: parameters must be an object")
        if "idempotency_key" in action.input_model.model_fields and "idempotency_key" not in params:
            params = {**params, "idempotency_key": key}  # the provider's own mechanism (Stripe)
        result = await self._connections.run(connection, action, params)
        return result.model_dump(mode="json", by_alias=True)

    async def _connection(
        self, owner_id: UUID, step: Mapping[str, Any], config: Mapping[str, Any]
    ) -> ConnectionRecord:
        connection_id = config.get("connectionId")
        if connection_id:
            try:
                return await self._connections.get(owner_id, UUID(str(connection_id)))
            except ValueError:
                raise StepFailed("invalid_input", f"{_where(step)}: connectionId is not a UUID") from None
        slug = config.get("connector")
        if not slug:
            raise StepFailed("invalid_input", f"{_where(step)}: give connectionId, or connector (and label)")
        label = config.get("label")
        found = [
            c
            for c in await self._connections.list(owner_id, connector_slugs=[str(slug)])
            if label is None or c.label == label
        ]
        if not found:
            named = f"{slug} connection" + (f" labelled {label!r}" if label is not None else "")
            raise StepFailed("not_found", f"{_where(step)}: no {named}")
        active = [c for c in found if c.status == ConnectionStatus.ACTIVE]
        # Oldest first, like agents' default connection; one not connected yet says how to connect it.
        return sorted(active or found, key=lambda c: (c.created_at, str(c.id)))[0]

    # -- http_request ----------------------------------------------------------------------------------
    async def _http_request(self, step: Mapping[str, Any], config: dict[str, Any], key: str) -> Any:
        http = self._catalog["http"]
        try:
            url = httpx.URL(str(config.get("url") or ""))
        except httpx.InvalidURL:
            raise StepFailed("invalid_input", f"{_where(step)}: url is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise StepFailed("invalid_input", f"{_where(step)}: url must be an absolute http(s) URL")
        origin = str(url.copy_with(path="/", query=None, fragment=None, username=None, password=None))
        headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        if not any(name.lower() == IDEMPOTENCY_HEADER.lower() for name in headers):
            headers[IDEMPOTENCY_HEADER] = key
        params: dict[str, Any] = {
            "method": str(config.get("method") or "GET").upper(),
            "url": str(url.copy_with(username=None, password=None)),
            "headers": headers,
        }
        body = config.get("body")
        if isinstance(body, str):
            params["body"] = body
        elif body is not None:
            params["json"] = body
        credentials = {
            "base_url": origin.rstrip("/"),
            "auth": "none",
            # The operator's list (TENDRIL_HTTP_ALLOWED_HOSTS): a step may reach what it opened.
            "allowed_hosts": ",".join(self._runner.options_for(http).allowed_hosts),
        }
        action = http.find_action("request")
        assert action is not None
        result = (await self._runner.run(http, action, params, credentials=credentials)).model_dump(
            mode="json", by_alias=True
        )
        if result["status"] >= 400:
            raise StepFailed(
                "upstream_error",
                f"{_where(step)}: {params['method']} {url.host} answered HTTP {result['status']}",
            )
        return result

    # -- condition -------------------------------------------------------------------------------------
    @staticmethod
    def _condition(step: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
        # The config was rendered already: a bare expression evaluates here, `{{ }}` gave a value.
        expression = config.get("if")
        value = (
            evaluate(expression, context, _where(step), "config.if")
            if isinstance(expression, str)
            else expression
        )
        otherwise = config.get("else") or "stop"
        if otherwise not in ("stop", "skip"):
            raise StepFailed("invalid_input", f"{_where(step)}: else must be stop or skip")
        skip = [str(n) for n in config.get("skip") or []] if otherwise == "skip" else []
        return {"result": bool(value), "then": "continue" if value else otherwise, "skip": skip}
