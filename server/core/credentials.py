"""Credentials as objects of their own: a provider's secret fields under a name, checked against the
connector's credential fields, verified with the provider, sealed, and never shown back.

A credential backs connections (connector instances) made from it. Each connection holds its own
sealed copy of the data, so running an action reads only the connection, as for any other; rotating
the credential (new data) verifies the new data first, then stores it in the credential and
re-seals it into every live connection it backs, which are active again if they needed
reconnecting. A credential that backs live connections cannot be deleted until they are revoked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from auth.credentials import CredentialVault
from connectors import Catalog, Connector
from server.core.audit import Audit
from server.core.connections import ConfigValue, Connections
from server.core.errors import Conflict, Invalid, NotFound
from storage.credentials import CredentialRecord, CredentialStore
from storage.repositories import ConnectionRecord

# What the Integration Layer's documentation calls credential types; descriptive only.
TYPES = ("oauth", "api_key", "token", "custom")
ID_PREFIX = "cred_"
_ID = re.compile(r"^cred_[0-9a-f]{32}$")
NAME_MAX, DESCRIPTION_MAX = 200, 1000


def credential_ref(credential_id: UUID) -> str:
    """The id the API shows: `cred_` and 32 hex digits."""
    return f"{ID_PREFIX}{credential_id.hex}"


def parse_ref(ref: str) -> UUID:
    if not _ID.match(ref):
        raise Invalid("malformed credential id: expected cred_ and 32 hex digits", field="credentialId")
    return UUID(hex=ref[len(ID_PREFIX) :])


class Credentials:
    def __init__(
        self,
        *,
        store: CredentialStore,
        vault: CredentialVault,
        catalog: Catalog,
        connections: Connections,
        audit: Audit,
    ) -> None:
        self._store = store
        self._audit = audit
        self._vault = vault
        self._catalog = catalog
        self._connections = connections

    # -- reading -----------------------------------------------------------------------------------
    async def get(self, owner_id: UUID, ref: str) -> CredentialRecord:
        record = await self._store.get(owner_id, parse_ref(ref))
        if record is None:
            raise NotFound("credential not found")
        return record

    async def list(self, owner_id: UUID) -> list[CredentialRecord]:
        return await self._store.list(owner_id)

    async def backing(self, owner_id: UUID) -> dict[UUID, list[UUID]]:
        """Each of the owner's credentials' live connections."""
        return await self._store.backed_connections([owner_id])

    # -- making and changing -------------------------------------------------------------------------
    async def create(
        self,
        owner_id: UUID,
        *,
        name: str,
        provider: str,
        data: Mapping[str, object],
        type: str | None = None,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> CredentialRecord:
        connector = self._provider(provider)
        credential_id = self._store.new_id()
        detail = {"credential": credential_ref(credential_id), "operation": "create"}
        with self._audit.timed("credential.submit", owner_id, connector=connector.slug, detail=detail):
            # Everything that needs no provider is checked before the provider is asked.
            name = _checked_text(name, "name", NAME_MAX, required=True)
            description = _checked_text(description, "description", DESCRIPTION_MAX)
            type = _checked_type(type, connector)
            fields = self._check_data(connector, data)
            account = await self._connections.verify(
                connector, fields, owner_id=owner_id, audit_detail={"credential": detail["credential"]}
            )
            return await self._store.create(
                credential_id,
                owner_id,
                name=name,
                description=description,
                type=type,
                provider=connector.slug,
                sealed_data=self._vault.seal(credential_id, fields, kind="credential"),
                fields=tuple(fields),
                metadata=dict(metadata or {}),
                account=account,
            )

    async def update(
        self,
        owner_id: UUID,
        ref: str,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        data: Mapping[str, object] | None = None,
    ) -> CredentialRecord:
        """Rename, describe, or rotate: new data is verified, then replaces the old everywhere."""
        record = await self.get(owner_id, ref)
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = _checked_text(name, "name", NAME_MAX, required=True)
        if description is not None:
            values["description"] = _checked_text(description, "description", DESCRIPTION_MAX)
        if metadata is not None:
            values["metadata"] = dict(metadata)
        fields: dict[str, str] | None = None
        if data is not None:
            ref = credential_ref(record.id)
            with self._audit.timed(
                "credential.submit",
                owner_id,
                connector=record.provider,
                detail={"credential": ref, "operation": "rotate"},
            ):
                connector = self._catalog[record.provider]
                fields = self._check_data(connector, data)
                values["account"] = await self._connections.verify(
                    connector, fields, owner_id=owner_id, audit_detail={"credential": ref}
                )
            values["sealed_data"] = self._vault.seal(record.id, fields, kind="credential")
            values["fields"] = list(fields)
        updated = await self._store.update(owner_id, record.id, **values) if values else record
        if updated is None:
            raise NotFound("credential not found")
        if fields is not None:
            for connection in await self._connections.list(owner_id, credential_id=record.id):
                await self._connections.reseal_from_credential(connection, fields, updated.account)
        return updated

    async def delete(self, owner_id: UUID, ref: str) -> None:
        record = await self.get(owner_id, ref)
        backed = await self._connections.list(owner_id, credential_id=record.id)
        if backed:
            raise Conflict(
                f"this credential backs {len(backed)} live connection(s); revoke them first "
                f"({', '.join(str(c.id) for c in backed)})"
            )
        if not await self._store.delete(owner_id, record.id):
            raise NotFound("credential not found")

    async def make_connection(
        self,
        owner_id: UUID,
        *,
        name: str,
        connector_slug: str,
        credential: str,
        config: Mapping[str, ConfigValue] | None = None,
    ) -> ConnectionRecord:
        """A connector instance: a connection of `connector_slug` on this credential, active at once
        once the provider accepts the credential again."""
        connector = self._catalog.get(connector_slug)
        if connector is None:
            raise Invalid(f"unknown connector type: {connector_slug}", field="type")
        record = await self.get(owner_id, credential)
        if record.provider != connector.slug:
            raise Invalid(
                f"credential {credential} is for {record.provider}, not {connector.slug}",
                field="credentialId",
            )
        fields = self._vault.open(record.id, record.sealed_data, kind="credential")
        account = await self._connections.verify(
            connector, fields, owner_id=owner_id, audit_detail={"credential": credential_ref(record.id)}
        )
        return await self._connections.add_from_credential(
            owner_id,
            connector,
            label=name,
            config=config,
            credential_id=record.id,
            fields=fields,
            account=account,
        )

    # -- checks ---------------------------------------------------------------------------------------
    def _provider(self, slug: str) -> Connector:
        connector = self._catalog.get(slug)
        if connector is None:
            raise Invalid(f"unknown provider: {slug}", field="provider")
        if connector.spec.files or connector.spec.webhook_only:
            raise Invalid(f"{slug} takes no credential objects", field="provider")
        return connector

    def _check_data(self, connector: Connector, data: Mapping[str, object]) -> dict[str, str]:
        """The connector's credential fields; an OAuth-only connector takes an access token."""
        if connector.spec.credential_fields:
            return self._connections.check_credentials(connector, data)
        token = data.get("access_token")
        if set(data) != {"access_token"} or not isinstance(token, str) or not token.strip():
            raise Invalid(
                f'{connector.spec.name} credentials are OAuth tokens: send data as {{"access_token": ...}}',
                field="data",
            )
        return {"access_token": token.strip()}


def _checked_text(value: str, field: str, limit: int, *, required: bool = False) -> str:
    if (required and not value.strip()) or len(value) > limit or "\x00" in value:
        need = "a non-empty string" if required else "a string"
        raise Invalid(f"{field} must be {need} of at most {limit} characters", field=field)
    return value.strip()


def _checked_type(value: str | None, connector: Connector) -> str:
    if value is None:
        return connector.spec.auth_type if connector.spec.auth_type in TYPES else "custom"
    if value not in TYPES:
        raise Invalid(f"type must be one of {', '.join(TYPES)}", field="type")
    return value
