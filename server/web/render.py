"""JSON shapes of the REST API (camelCase, as the seeds show). No secret ever leaves here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors import Action, Connector
from server.hub import Hub
from storage.repositories import AgentRecord, ApiKeyRecord, ConnectionRecord


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def connection(hub: Hub, record: ConnectionRecord) -> dict[str, Any]:
    # Credentials are deliberately absent: only whether one is stored.
    return {
        "id": str(record.id),
        "connectorSlug": record.connector_slug,
        "label": record.label,
        "status": record.status,
        "config": dict(record.config),
        "account": dict(record.account),
        "hasCredentials": record.sealed_credentials is not None,
        "authMethod": record.auth_method,
        "scopes": list(record.scopes) if record.scopes is not None else None,
        "tokenExpiresAt": _time(record.token_expires_at),
        "lastError": record.last_error,
        "connectUrl": hub.connect_page_url(record) if record.status != "active" else None,
        "createdAt": _time(record.created_at),
        "updatedAt": _time(record.updated_at),
        "deletedAt": _time(record.deleted_at),
    }


def tool(action: Action) -> dict[str, Any]:
    return {
        "name": action.tool_name,
        "action": action.name,
        "title": action.title,
        "description": action.description,
        "inputSchema": action.input_model.model_json_schema(),
        "outputSchema": action.output_model.model_json_schema(),
        "annotations": action.hints.as_mcp(),
        "scopes": list(action.scopes),
    }


def connector(hub: Hub, item: Connector) -> dict[str, Any]:
    spec = item.spec
    configured = hub.is_configured(item)
    availability = spec.availability if configured else "not_configured"
    auth_type = hub.auth_mode(item)
    body: dict[str, Any] = {
        "slug": spec.slug,
        "name": spec.name,
        "description": spec.description,
        "authType": auth_type,
        "configured": configured,
        "availability": availability,
        "tools": [tool(action) for action in item.actions.values()],
    }
    # The Integration Layer seed reads the same catalog as `type` and `actions`.
    body["type"] = spec.slug
    body["actions"] = [
        {k: v for k, v in t.items() if k in ("name", "description", "inputSchema", "outputSchema")}
        | {"name": t["action"]}
        for t in body["tools"]
    ]
    if availability != "available":
        body["availabilityReason"] = (
            f"set TENDRIL_{spec.slug.upper()}_CLIENT_ID and _CLIENT_SECRET"
            if not configured
            else spec.availability_reason or f"connector is {spec.availability}"
        )
    if auth_type == "api_key":
        body["credentialFields"] = [field.model_dump(exclude_none=True) for field in spec.credential_fields]
    return body


def agent(record: AgentRecord) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "name": record.name,
        "allowedConnectors": list(record.allowed_connectors),
        "keyPrefix": record.key_prefix,
        "createdAt": _time(record.created_at),
        "updatedAt": _time(record.updated_at),
    }


def api_key(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "name": record.name,
        "prefix": record.key_prefix,
        "permissions": list(record.permissions),
        "createdAt": _time(record.created_at),
        "lastUsedAt": _time(record.last_used_at),
        "revokedAt": _time(record.revoked_at),
    }
