"""Tendril's use cases, shared by the REST API, the MCP server and the CLI.

Routes and tool handlers stay thin: they authenticate, parse, call one method here and render.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from auth import api_keys
from auth.credentials import CredentialVault
from auth.oauth import OAuthFailure
from auth.tokens import ReauthorizationNeeded, TokenKeeper
from connectors import Action, ActionRunner, Catalog, Connector, HookRef, HookRequest, RegisteredHook
from connectors.errors import (
    ConnectorError,
    InvalidCredentials,
    InvalidInput,
    NotConnected,
    RateLimited,
    UpstreamError,
)
from server.errors import ApiError
from server.files import FileService
from server.oauth_connections import OAuthConnections
from server.settings import Settings
from server.waiters import ConnectionWaiters
from server.webhooks import WebhookService
from storage.flows import FlowStore
from storage.notices import ChangeNotices
from storage.repositories import (
    AgentRecord,
    AlreadyExists,
    ApiKeyRecord,
    ConnectionRecord,
    ConnectionStatus,
    Owner,
    Store,
)

_LABEL_MAX = 200
_T = TypeVar("_T")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class OwnerPrincipal:
    """Whoever presented an owner API key."""

    owner_id: UUID
    key_id: UUID
    permissions: tuple[str, ...]

    def require(self, permission: api_keys.Permission) -> None:
        if not api_keys.grants(self.permissions, permission):
            raise ApiError(403, f"this API key lacks the '{permission}' permission")


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: ApiKeyRecord
    plaintext: str


@dataclass(frozen=True, slots=True)
class CreatedAgent:
    record: AgentRecord
    plaintext_key: str


class Hub:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        flows: FlowStore,
        vault: CredentialVault,
        catalog: Catalog,
        runner: ActionRunner,
    ) -> None:
        self.settings = settings
        self.store = store
        self.flows = flows
        self.vault = vault
        self.catalog = catalog
        self.runner = runner
        self.waiters = ConnectionWaiters()
        self.tokens = TokenKeeper(store, vault)
        self.notices = ChangeNotices(store.engine)
        self.files = FileService(settings, store, self.notices)
        self.webhooks = WebhookService(
            settings,
            store,
            vault,
            catalog,
            register_hook=self.register_hook,
            remove_hook=self.remove_hook,
            notices=self.notices,
        )
        self.oauth = OAuthConnections(
            settings=settings, catalog=catalog, store=store, flows=flows, vault=vault, waiters=self.waiters
        )

    async def check_master_key(self) -> None:
        """Open one stored credential per key id: a wrong TENDRIL_MASTER_KEY fails here, loudly."""
        seen: set[str] = set()
        for connection_id, sealed in await self.store.all_sealed_credentials():
            key_id = self.vault.keyring.sealed_key_id(sealed)
            if key_id not in seen:
                self.vault.open(connection_id, sealed)  # raises CryptoError naming the key id
                seen.add(key_id)

    # -- URLs handed out ------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.settings.public_url}{path}"

    def credential_submit_url(self, connection: ConnectionRecord) -> str:
        return self.url(f"/api/v1/connections/{connection.id}/credentials")

    def connect_page_url(self, connection: ConnectionRecord) -> str:
        return self.url(f"/connect/{connection.id}")

    # -- owners and keys -----------------------------------------------------------------------
    async def create_owner(self, name: str) -> Owner:
        check_name(name, "owner name")
        try:
            return await self.store.create_owner(name)
        except AlreadyExists as exc:
            raise ApiError(409, str(exc)) from None

    async def owner_named(self, name: str) -> Owner:
        owner = await self.store.owner_by_name(name)
        if owner is None:
            raise ApiError(404, f"no owner named {name!r}")
        return owner

    async def create_api_key(
        self, owner_id: UUID, *, name: str, permissions: Sequence[str] | None = None
    ) -> CreatedKey:
        check_name(name, "key name")
        if permissions is not None and not permissions:
            raise ApiError(400, "permissions must name at least one of " + ", ".join(api_keys.PERMISSIONS))
        chosen = list(dict.fromkeys(permissions or api_keys.DEFAULT_PERMISSIONS))
        unknown = [p for p in chosen if p not in api_keys.PERMISSIONS]
        if unknown:
            raise ApiError(400, f"unknown permission(s) {unknown}; choose from {list(api_keys.PERMISSIONS)}")
        key = api_keys.new_key()
        record = await self.store.create_api_key(
            owner_id, name=name, key_hash=key.digest, key_prefix=key.display_prefix, permissions=chosen
        )
        return CreatedKey(record, key.plaintext)

    async def authenticate_owner(self, presented: str | None) -> OwnerPrincipal:
        if not presented:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'")
        record = await self.store.api_key_by_hash(api_keys.digest(presented))
        if record is None:
            raise ApiError(401, "invalid or revoked API key")
        return OwnerPrincipal(record.owner_id, record.id, record.permissions)

    # -- agents --------------------------------------------------------------------------------
    def check_allowed_connectors(self, slugs: Any) -> list[str]:
        if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
            raise ApiError(400, "allowedConnectors must be a list of connector slugs")
        # Webhook-only providers (twilio, whatsapp) may be allowed too: their events become jobs.
        unknown = [s for s in slugs if not self.catalog.knows(s)]
        if unknown:
            raise ApiError(400, f"unknown connector slug(s): {', '.join(unknown)}")
        return list(dict.fromkeys(slugs))

    async def create_agent(self, owner_id: UUID, *, name: Any, allowed_connectors: Any) -> CreatedAgent:
        check_name(name, "agent name")
        allowed = self.check_allowed_connectors(allowed_connectors)
        key = api_keys.new_key(api_keys.AGENT_KEY_PREFIX)
        try:
            record = await self.store.create_agent(
                owner_id,
                name=name,
                allowed_connectors=allowed,
                key_hash=key.digest,
                key_prefix=key.display_prefix,
            )
        except AlreadyExists as exc:
            raise ApiError(409, str(exc)) from None
        return CreatedAgent(record, key.plaintext)

    async def update_agent(
        self, owner_id: UUID, agent_id: UUID, *, name: str | None, allowed_connectors: list[str] | None
    ) -> AgentRecord:
        if name is not None:
            check_name(name, "agent name")
        try:
            updated = await self.store.update_agent(
                owner_id, agent_id, name=name, allowed_connectors=allowed_connectors
            )
        except AlreadyExists as exc:
            raise ApiError(409, str(exc)) from None
        if updated is None:
            raise ApiError(404, "agent not found")
        return updated

    async def authenticate_agent(self, presented: str) -> AgentRecord | None:
        return await self.store.agent_by_key_hash(api_keys.digest(presented))

    # -- connections -----------------------------------------------------------------------------
    def connector(self, slug: Any) -> Connector:
        if slug is None or slug == "":
            raise ApiError(400, "connectorSlug is required")
        if not isinstance(slug, str):
            raise ApiError(400, "connectorSlug must be a string")
        connector = self.catalog.get(slug)
        if connector is None:
            raise ApiError(400, f"unknown connector slug: {slug}")
        return connector

    def auth_mode(self, connector: Connector) -> str:
        """How a new connection authenticates: OAuth when its client is configured, else a credential form."""
        if connector.spec.oauth is not None and self.oauth.provider(connector) is not None:
            return "oauth"
        if connector.spec.credential_fields:
            return "api_key"
        return connector.spec.auth_type

    def is_configured(self, connector: Connector) -> bool:
        """False only for an OAuth-only connector whose client id and secret are not set."""
        return self.auth_mode(connector) != "oauth" or self.oauth.provider(connector) is not None

    def check_config(self, connector: Connector, config: Any) -> dict[str, Any]:
        """A connection's config holds the defaults its connector declares, nothing else."""
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise ApiError(400, "config must be a JSON object")
        allowed = set(connector.spec.defaults.values())
        unknown = sorted(set(config) - allowed)
        if unknown:
            choices = ", ".join(sorted(allowed)) or "none"
            raise ApiError(
                400, f"unknown config key(s) {', '.join(unknown)}; {connector.slug} takes: {choices}"
            )
        for key, value in config.items():
            if value is not None and not isinstance(value, str | int):
                raise ApiError(400, f"config '{key}' must be a string or a number")
        return {k: v for k, v in config.items() if v is not None}

    async def update_connection(
        self, owner_id: UUID, connection_id: str, *, label: Any = None, config: Any = None
    ) -> ConnectionRecord:
        record = await self.get_connection(owner_id, connection_id)
        values: dict[str, Any] = {}
        if label is not None:
            values["label"] = _clean_label(label)
        if config is not None:
            values["config"] = {
                **record.config,
                **self.check_config(self.catalog[record.connector_slug], config),
            }
        updated = await self.store.update_connection(owner_id, record.id, **values) if values else record
        if updated is None:
            raise ApiError(404, "connection not found")
        return updated

    async def start_connection(
        self, owner_id: UUID, connector: Connector, label: str | None, config: Any = None
    ) -> tuple[ConnectionRecord, bool]:
        """The owner's connection for (connector, label): an active or pending one is reused.

        Returns (connection, created_now).
        """
        if connector.spec.availability == "deprecated":
            raise ApiError(400, f"connector {connector.slug} is deprecated")
        if connector.spec.files:
            raise ApiError(
                400, f"{connector.slug} connections are made with POST /connectors (the files API)"
            )
        if not self.is_configured(connector):
            env = f"TENDRIL_{connector.slug.upper()}_CLIENT_ID and _CLIENT_SECRET"
            raise ApiError(400, f"connector {connector.slug} is not configured yet: set {env}")
        label = _clean_label(label) if label is not None else connector.spec.name
        existing = await self.store.list_connections(owner_id, connector_slugs=[connector.slug], label=label)
        for status in (ConnectionStatus.ACTIVE, ConnectionStatus.PENDING, ConnectionStatus.NEEDS_REAUTH):
            for record in existing:
                if record.status == status:
                    return record, False
        record = await self.store.create_connection(
            owner_id,
            connector_slug=connector.slug,
            label=label,
            config=self.check_config(connector, config),
            auth_method=self.auth_mode(connector),
        )
        return record, True

    async def get_connection(self, owner_id: UUID, connection_id: str) -> ConnectionRecord:
        record = await self.store.get_connection(owner_id, parse_uuid(connection_id, "connection id"))
        if record is None:
            raise ApiError(404, "connection not found")
        return record

    def check_credentials(self, connector: Connector, submitted: Any) -> dict[str, str]:
        """Validate a credential payload against the connector's credentialFields."""
        if not isinstance(submitted, dict):
            raise ApiError(400, "credentials must be a JSON object of credential fields")
        declared = {f.key: f for f in connector.spec.credential_fields}
        unknown = sorted(set(submitted) - set(declared))
        if unknown:
            raise ApiError(400, f"unknown credential field(s): {', '.join(unknown)}")
        fields: dict[str, str] = {}
        for key, spec in declared.items():
            value = submitted.get(key)
            if value is None or value == "":
                if spec.required:
                    raise ApiError(400, f"credential field '{key}' is required")
                continue
            if not isinstance(value, str | int):
                raise ApiError(400, f"credential field '{key}' must be a string")
            text = str(value).strip()
            if spec.pattern and not re.fullmatch(spec.pattern, text):
                # Never echo the value: it may be a real secret pasted in the wrong field.
                raise ApiError(400, f"credential field '{key}' does not look like a {spec.label}")
            fields[key] = text
        return fields

    async def submit_credentials(
        self, owner_id: UUID, connection_id: str, submitted: Any
    ) -> ConnectionRecord:
        record = await self.get_connection(owner_id, connection_id)
        connector = self.connector(record.connector_slug)
        if not connector.spec.credential_fields:
            raise ApiError(400, f"connector {connector.slug} does not take API-key credentials")
        fields = self.check_credentials(connector, submitted)
        try:
            account = await self.runner.verify(connector, fields)
        except InvalidCredentials as exc:
            raise ApiError(400, f"{connector.spec.name} rejected the credential: {exc.message}") from None
        except RateLimited:
            raise  # answered as 429 with Retry-After, like any rate-limited call
        except ConnectorError as exc:
            raise ApiError(
                502, f"could not verify the credential with {connector.spec.name}: {exc.message}"
            ) from None
        sealed = self.vault.seal(record.id, fields)
        updated = await self.store.activate_connection(
            owner_id, record.id, sealed_credentials=sealed, account=account
        )
        if updated is None:  # revoked meanwhile
            raise ApiError(404, "connection not found")
        await self.waiters.connected(updated.id)
        return updated

    async def revoke_connection(self, owner_id: UUID, connection_id: str) -> None:
        record = await self.get_connection(owner_id, connection_id)
        await self.oauth.revoke_at_provider(record)
        await self.store.revoke_connection(owner_id, record.id)

    # -- running actions ---------------------------------------------------------------------
    def action(self, connector: Connector, name: str) -> Action:
        action = connector.find_action(name)
        if action is None:
            raise ApiError(400, f"unknown action: {name}")
        return action

    async def run_on_connection(
        self, connection: ConnectionRecord, action: Action, params: Mapping[str, Any]
    ) -> BaseModel:
        """Run an action with a stored connection's credential (raises ConnectorError)."""

        async def run(connector: Connector, credentials: dict[str, str]) -> BaseModel:
            return await self.runner.run(
                connector,
                action,
                params,
                credentials=credentials,
                config=connection.config,
                connection_id=connection.id,
            )

        return await self._with_credentials(connection, run)

    async def register_hook(self, connection: ConnectionRecord, request: HookRequest) -> RegisteredHook:
        """Create a webhook at the provider with the connection's credential (raises ConnectorError)."""

        async def register(connector: Connector, credentials: dict[str, str]) -> RegisteredHook:
            return await self.runner.call(
                connector, credentials, lambda client: connector.register_hook(client, request)
            )

        return await self._with_credentials(connection, register)

    async def remove_hook(self, connection: ConnectionRecord, hook: HookRef) -> bool:
        """Remove a webhook that register_hook created (raises ConnectorError)."""

        async def remove(connector: Connector, credentials: dict[str, str]) -> bool:
            return await self.runner.call(
                connector, credentials, lambda client: connector.remove_hook(client, hook)
            )

        return await self._with_credentials(connection, remove)

    async def _with_credentials(
        self,
        connection: ConnectionRecord,
        use: Callable[[Connector, dict[str, str]], Awaitable[_T]],
    ) -> _T:
        """Call the provider with the connection's fresh credential; a credential the provider now
        refuses marks the connection for reconnecting and raises NotConnected."""
        connector = self.catalog[connection.connector_slug]
        credentials = await self._fresh_credentials(connection, connector)
        try:
            return await use(connector, credentials)
        except InvalidCredentials:
            await self._needs_reauth(connection)
            raise self.not_connected(connection, reauth=True) from None

    async def _fresh_credentials(self, connection: ConnectionRecord, connector: Connector) -> dict[str, str]:
        if connection.status != ConnectionStatus.ACTIVE or connection.sealed_credentials is None:
            raise self.not_connected(connection)
        oauth = self.oauth.client(connector) if connection.auth_method == "oauth" else None
        try:
            return dict(await self.tokens.fresh_credentials(connection, oauth))
        except ReauthorizationNeeded:
            raise self.not_connected(connection, reauth=True) from None
        except OAuthFailure as failure:
            name = connector.spec.name
            raise UpstreamError(
                f"could not refresh the {name} token ({failure.error})", retryable=True
            ) from None

    async def _needs_reauth(self, connection: ConnectionRecord) -> None:
        """The provider refused a credential that used to work: ask the user to connect again."""
        await self.store.set_connection_status(
            connection.owner_id,
            connection.id,
            ConnectionStatus.NEEDS_REAUTH,
            last_error="the provider rejected the stored credential",
        )

    def not_connected(self, connection: ConnectionRecord, *, reauth: bool = False) -> NotConnected:
        name = self.catalog[connection.connector_slug].spec.name
        why = "needs to be connected again" if reauth else "is not connected yet"
        url = self.connect_page_url(connection)
        return NotConnected(
            f"The {name} connection '{connection.label}' {why}. Ask the user to open {url} "
            "to connect it, then retry this call.",
            connect_url=url,
            connection_id=str(connection.id),
        )

    async def run_inline(
        self, connector: Connector, action: Action, credentials: Any, params: Any
    ) -> BaseModel:
        """The one-shot `POST /connect/{connector}` path: a credential that is used once, never stored."""
        if connector.spec.credential_fields:
            fields = self.check_credentials(connector, credentials)
        elif isinstance(credentials, dict) and isinstance(credentials.get("access_token"), str):
            fields = {"access_token": credentials["access_token"]}
        else:
            raise ApiError(400, "token required")
        if not isinstance(params, dict):
            raise InvalidInput("params must be a JSON object", field="params")
        return await self.runner.run(connector, action, params, credentials=fields)


def parse_uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ApiError(400, f"malformed {what}: expected a UUID") from None


def check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ApiError(400, f"{what} must be 1-100 characters of letters, digits, spaces, '.', '_' or '-'")


def _clean_label(label: Any) -> str:
    if not isinstance(label, str) or not label.strip() or len(label) > _LABEL_MAX:
        raise ApiError(400, f"label must be a non-empty string of at most {_LABEL_MAX} characters")
    if _CONTROL.search(label):
        # PostgreSQL cannot store NUL, and no label needs a control character.
        raise ApiError(400, "label must not contain control characters")
    return label.strip()
