"""A connection's life, and running actions on it.

This module is the one writer of a connection's status: every move goes through `_move`, checked
against `MOVES` here and again by the database (a compare-and-set), so no other module can leave
a connection in a state it should not reach.

    pending ──credential or OAuth──> active ──provider refuses it──> needs_reauth
       ^                               │                                │
       └──── handshake ended ──────────┴──────── reconnected ───────────┘
    any live status ──revoke──> revoked (the credential is erased; final)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from auth.credentials import CredentialVault
from auth.oauth import OAuthFailure
from auth.tokens import ReauthorizationNeeded, TokenKeeper
from connectors import Action, ActionRunner, Catalog, Connector, HookRef, HookRequest, RegisteredHook
from connectors.errors import ConnectorError, InvalidCredentials, NotConnected, RateLimited, UpstreamError
from server.core.audit import Audit, current_actor
from server.core.errors import Conflict, Invalid, NotFound, Upstream
from server.core.links import Links
from server.core.metrics import Metrics
from server.core.oauth_clients import OAuthClients
from server.core.waiters import ConnectionWaiters
from storage.repositories import ConnectionRecord, ConnectionStatus, Store

_T = TypeVar("_T")
Status = ConnectionStatus
# Told of every status move, after it is stored: (the connection as it is now, the status it left).
StatusListener = Callable[[ConnectionRecord, ConnectionStatus], Awaitable[None]]
LIVE = frozenset({Status.PENDING, Status.ACTIVE, Status.NEEDS_REAUTH})

# To each status, the statuses a connection may come from.
MOVES: dict[ConnectionStatus, frozenset[ConnectionStatus]] = {
    Status.ACTIVE: LIVE,  # a credential stored, a handshake completed, a file uploaded
    Status.NEEDS_REAUTH: frozenset({Status.ACTIVE}),  # the provider refused the stored credential
    Status.PENDING: LIVE,  # a (re)started handshake ended without authorization
    Status.REVOKED: LIVE,
}

LABEL_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

ConfigValue = str | int | None


def clean_label(label: str) -> str:
    if not label.strip() or len(label) > LABEL_MAX:
        raise Invalid(f"label must be a non-empty string of at most {LABEL_MAX} characters", field="label")
    if _CONTROL.search(label):
        # PostgreSQL cannot store NUL, and no label needs a control character.
        raise Invalid("label must not contain control characters", field="label")
    return label.strip()


class Connections:
    def __init__(
        self,
        *,
        store: Store,
        vault: CredentialVault,
        catalog: Catalog,
        runner: ActionRunner,
        oauth: OAuthClients,
        links: Links,
        waiters: ConnectionWaiters,
        metrics: Metrics,
        audit: Audit,
    ) -> None:
        self._store = store
        self._audit = audit
        self._vault = vault
        self._catalog = catalog
        self._runner = runner
        self._oauth = oauth
        self._links = links
        self._tokens = TokenKeeper(store, vault, on_refresh=metrics.token_refresh)
        self._waiters = waiters
        self._status_listeners: list[StatusListener] = []

    def on_status(self, listener: StatusListener) -> None:
        """Call `listener` after every status move (outgoing webhooks' connection.* events); a
        listener's failure is its own and never undoes or fails the move."""
        self._status_listeners.append(listener)

    # -- connectors ---------------------------------------------------------------------------------
    def connector(self, slug: str | None) -> Connector:
        if not slug:
            raise Invalid("connectorSlug is required", field="connectorSlug")
        connector = self._catalog.get(slug)
        if connector is None:
            raise Invalid(f"unknown connector slug: {slug}", field="connectorSlug")
        return connector

    def auth_mode(self, connector: Connector) -> str:
        """How a new connection authenticates: OAuth when its client is configured, else a credential form."""
        if connector.spec.oauth is not None and self._oauth.provider(connector) is not None:
            return "oauth"
        if connector.spec.credential_fields:
            return "api_key"
        return connector.spec.auth_type

    def is_configured(self, connector: Connector) -> bool:
        """False only for an OAuth-only connector whose client id and secret are not set."""
        return self.auth_mode(connector) != "oauth" or self._oauth.provider(connector) is not None

    def action(self, connector: Connector, name: str) -> Action:
        action = connector.find_action(name)
        if action is None:
            raise Invalid(f"unknown action: {name}", field="action")
        return action

    # -- reading -----------------------------------------------------------------------------------
    async def get(self, owner_id: UUID, connection_id: UUID) -> ConnectionRecord:
        record = await self._store.get_connection(owner_id, connection_id)
        if record is None:
            raise NotFound("connection not found")
        return record

    async def find(self, owner_id: UUID, connection_id: UUID) -> ConnectionRecord | None:
        return await self._store.get_connection(owner_id, connection_id)

    async def find_any(self, connection_id: UUID) -> ConnectionRecord | None:
        """For the operator's CLI, which acts for whichever owner holds the connection."""
        return await self._store.connection_by_id(connection_id)

    async def list(
        self,
        owner_id: UUID,
        *,
        connector_slugs: Sequence[str] | None = None,
        status: ConnectionStatus | None = None,
        credential_id: UUID | None = None,
    ) -> list[ConnectionRecord]:
        """The owner's live connections (those made from one credential object), newest first."""
        return await self._store.list_connections(
            owner_id, connector_slugs=connector_slugs, status=status, credential_id=credential_id
        )

    async def active_by_connector(
        self, owner_id: UUID, slugs: Sequence[str]
    ) -> dict[str, list[ConnectionRecord]]:
        """The owner's active connections per connector, oldest first: the first made is the default."""
        records = await self._store.list_connections(owner_id, connector_slugs=slugs, status=Status.ACTIVE)
        grouped: dict[str, list[ConnectionRecord]] = {}
        for record in sorted(records, key=lambda r: (r.created_at, str(r.id))):
            grouped.setdefault(record.connector_slug, []).append(record)
        return grouped

    # -- making and changing ---------------------------------------------------------------------------
    async def start(
        self,
        owner_id: UUID,
        connector: Connector,
        *,
        label: str | None = None,
        config: Mapping[str, ConfigValue] | None = None,
    ) -> tuple[ConnectionRecord, bool]:
        """The owner's connection for (connector, label): an active or pending one is reused.

        Returns (connection, created_now)."""
        if connector.spec.files:
            raise Invalid(f"{connector.slug} connections are made with POST /connectors (the files API)")
        self._check_usable(connector)
        label = clean_label(label) if label is not None else connector.spec.name
        checked = self._check_config(connector, config)
        existing = await self._store.list_connections(owner_id, connector_slugs=[connector.slug], label=label)
        for status in (Status.ACTIVE, Status.PENDING, Status.NEEDS_REAUTH):
            for record in existing:
                if record.status == status:
                    return record, False
        record = await self._store.create_connection(
            owner_id,
            connector_slug=connector.slug,
            label=label,
            config=checked,
            auth_method=self.auth_mode(connector),
        )
        return record, True

    async def add_from_credential(
        self,
        owner_id: UUID,
        connector: Connector,
        *,
        label: str,
        config: Mapping[str, ConfigValue] | None,
        credential_id: UUID,
        fields: Mapping[str, str],
        account: Mapping[str, Any],
    ) -> ConnectionRecord:
        """A new connection holding its own sealed copy of a verified credential object's data,
        active at once. Its label must be free among the owner's live connections of the connector."""
        self._check_usable(connector)
        label = clean_label(label)
        checked = self._check_config(connector, config)
        taken = await self._store.list_connections(owner_id, connector_slugs=[connector.slug], label=label)
        if taken:
            raise Conflict(f"a {connector.spec.name} connection named {label!r} already exists")
        record = await self._store.create_connection(
            owner_id,
            connector_slug=connector.slug,
            label=label,
            config=checked,
            auth_method="api_key",
            credential_id=credential_id,
        )
        activated = await self.activate(
            record, sealed_credentials=self._vault.seal(record.id, fields), account=account
        )
        if activated is None:  # revoked before it was ever shown: nobody can have done that
            raise Conflict("the new connection changed while it was being made; try again")
        return activated

    async def reseal_from_credential(
        self, connection: ConnectionRecord, fields: Mapping[str, str], account: Mapping[str, Any]
    ) -> ConnectionRecord | None:
        """A rotated credential object's new data, sealed into a connection it backs (active again
        if it needed reconnecting); None if the connection was revoked meanwhile."""
        return await self.activate(
            connection, sealed_credentials=self._vault.seal(connection.id, fields), account=account
        )

    async def add_file(
        self, owner_id: UUID, connector: Connector, *, label: str, config: Mapping[str, Any]
    ) -> ConnectionRecord:
        """A new file connection (an upload to come, or a bucket folder): never reused by label."""
        self._check_usable(connector)
        return await self._store.create_connection(
            owner_id,
            connector_slug=connector.slug,
            label=clean_label(label),
            config=dict(config),
            auth_method="none",
        )

    def _check_usable(self, connector: Connector) -> None:
        if connector.spec.availability == "deprecated":
            raise Invalid(f"connector {connector.slug} is deprecated")
        if not self.is_configured(connector):
            env = f"TENDRIL_{connector.slug.upper()}_CLIENT_ID and _CLIENT_SECRET"
            raise Invalid(f"connector {connector.slug} is not configured yet: set {env}")

    def _check_config(self, connector: Connector, config: Mapping[str, ConfigValue] | None) -> dict[str, Any]:
        """A connection's config holds the defaults its connector declares, nothing else."""
        if not config:
            return {}
        allowed = set(connector.spec.defaults.values())
        unknown = sorted(set(config) - allowed)
        if unknown:
            choices = ", ".join(sorted(allowed)) or "none"
            raise Invalid(
                f"unknown config key(s) {', '.join(unknown)}; {connector.slug} takes: {choices}",
                field="config",
            )
        return {k: v for k, v in config.items() if v is not None}

    async def update(
        self,
        owner_id: UUID,
        connection_id: UUID,
        *,
        label: str | None = None,
        config: Mapping[str, ConfigValue] | None = None,
    ) -> ConnectionRecord:
        record = await self.get(owner_id, connection_id)
        values: dict[str, Any] = {}
        if label is not None:
            values["label"] = clean_label(label)
        if config is not None:
            values["config"] = {
                **record.config,
                **self._check_config(self._catalog[record.connector_slug], config),
            }
        updated = await self._store.update_connection(owner_id, record.id, **values) if values else record
        if updated is None:
            raise NotFound("connection not found")
        return updated

    def check_credentials(self, connector: Connector, submitted: Mapping[str, object]) -> dict[str, str]:
        """Validate a credential against the connector's credential fields."""
        declared = {f.key: f for f in connector.spec.credential_fields}
        unknown = sorted(set(submitted) - set(declared))
        if unknown:
            raise Invalid(f"unknown credential field(s): {', '.join(unknown)}")
        fields: dict[str, str] = {}
        for key, spec in declared.items():
            value = submitted.get(key)
            if value is None or value == "":
                if spec.required:
                    raise Invalid(f"credential field '{key}' is required", field=key)
                continue
            if not isinstance(value, str | int):
                raise Invalid(f"credential field '{key}' must be a string", field=key)
            text = str(value).strip()
            if spec.pattern and not re.fullmatch(spec.pattern, text):
                # Never echo the value: it may be a real secret pasted in the wrong field.
                raise Invalid(f"credential field '{key}' does not look like a {spec.label}", field=key)
            fields[key] = text
        return fields

    async def verify(
        self,
        connector: Connector,
        fields: Mapping[str, str],
        *,
        owner_id: UUID,
        connection_id: UUID | None = None,
        audit_detail: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Ask the provider whether a credential works; its non-secret account facts if it does."""
        with self._audit.timed(
            "credential.verify",
            owner_id,
            connection_id=connection_id,
            connector=connector.slug,
            detail=audit_detail,
        ):
            return await self._verify(connector, fields)

    async def _verify(self, connector: Connector, fields: Mapping[str, str]) -> dict[str, Any]:
        try:
            return await self._runner.verify(connector, fields)
        except InvalidCredentials as exc:
            raise Invalid(f"{connector.spec.name} rejected the credential: {exc.message}") from None
        except RateLimited:
            raise  # answered like any rate-limited call, with when to retry
        except ConnectorError as exc:
            raise Upstream(
                f"could not verify the credential with {connector.spec.name}: {exc.message}"
            ) from None

    async def submit_credentials(
        self, owner_id: UUID, connection_id: UUID, submitted: Mapping[str, object]
    ) -> ConnectionRecord:
        """Verify a credential with the provider, store it sealed, and activate the connection."""
        record = await self.get(owner_id, connection_id)
        with self._audit.timed(
            "credential.submit", owner_id, connection_id=record.id, connector=record.connector_slug
        ):
            connector = self.connector(record.connector_slug)
            if not connector.spec.credential_fields:
                raise Invalid(f"connector {connector.slug} does not take API-key credentials")
            fields = self.check_credentials(connector, submitted)
            account = await self.verify(connector, fields, owner_id=owner_id, connection_id=record.id)
            activated = await self.activate(
                record, sealed_credentials=self._vault.seal(record.id, fields), account=account
            )
            if activated is None:  # revoked meanwhile
                raise NotFound("connection not found")
            return activated

    async def revoke(self, owner_id: UUID, connection_id: UUID) -> ConnectionRecord:
        """Delete a connection: its token is revoked at the provider (OAuth), its credential erased."""
        record = await self.get(owner_id, connection_id)
        await self._revoke_at_provider(record)
        revoked = await self._move(record, Status.REVOKED, credentials=None)
        if revoked is None:
            raise NotFound("connection not found")
        return revoked

    async def _revoke_at_provider(self, connection: ConnectionRecord) -> bool:
        """Best-effort RFC 7009 revocation before a connection is deleted."""
        if connection.auth_method != "oauth" or connection.sealed_credentials is None:
            return False
        client = self._oauth.client(self._catalog[connection.connector_slug])
        if client is None:
            return False
        credentials = self._vault.open(connection.id, connection.sealed_credentials)
        token = credentials.get("refresh_token") or credentials.get("access_token")
        hint = "refresh_token" if "refresh_token" in credentials else "access_token"
        return await client.revoke(token, hint=hint) if token else False

    # -- status moves (the only writers) ------------------------------------------------------------
    async def _move(
        self, connection: ConnectionRecord, to: ConnectionStatus, **values: Any
    ) -> ConnectionRecord | None:
        moved = await self._store.move_connection(
            connection.id, owner_id=connection.owner_id, to=to, allowed_from=MOVES[to], **values
        )
        if moved is not None and moved.status != connection.status:
            self._audit.record(
                "connection.status",
                moved.owner_id,
                connection_id=moved.id,
                connector=moved.connector_slug,
                detail={"from": str(connection.status), "to": str(moved.status)},
            )
            for listener in self._status_listeners:
                await listener(moved, connection.status)
        return moved

    async def activate(
        self,
        connection: ConnectionRecord,
        *,
        sealed_credentials: str | None,
        account: Mapping[str, Any],
        auth_method: str | None = None,
        scopes: Sequence[str] | None = None,
        token_expires_at: datetime | None = None,
    ) -> ConnectionRecord | None:
        """Active with this credential (or file); whoever waits for the connection is told."""
        values: dict[str, Any] = {"account": dict(account), "last_error": None}
        if sealed_credentials is not None:
            values.update(
                credentials=sealed_credentials,
                auth_method=auth_method or connection.auth_method,
                scopes=list(scopes) if scopes is not None else None,
                token_expires_at=token_expires_at,
            )
        activated = await self._move(connection, Status.ACTIVE, **values)
        if activated is not None:
            await self._waiters.connected(activated.id)
        return activated

    async def handshake_ended(self, owner_id: UUID, connection_id: UUID, reason: str) -> None:
        record = await self.find(owner_id, connection_id)
        if record is not None:
            await self._move(record, Status.PENDING, last_error=reason)

    async def needs_reauth(self, connection: ConnectionRecord, reason: str) -> None:
        """The provider refused a credential that used to work: ask the user to connect again."""
        await self._move(connection, Status.NEEDS_REAUTH, last_error=reason)

    # -- running -------------------------------------------------------------------------------------
    def not_connected(self, connection: ConnectionRecord, *, reauth: bool = False) -> NotConnected:
        name = self._catalog[connection.connector_slug].spec.name
        why = "needs to be connected again" if reauth else "is not connected yet"
        url = self._links.connect_page(connection.id)
        return NotConnected(
            f"The {name} connection '{connection.label}' {why}. Ask the user to open {url} "
            "to connect it, then retry this call.",
            connect_url=url,
            connection_id=str(connection.id),
        )

    async def run(self, connection: ConnectionRecord, action: Action, params: Mapping[str, Any]) -> BaseModel:
        """Run an action with a stored connection's credential (raises ConnectorError); audited as
        an agent's tool call or a key's action run, with its outcome and latency."""

        async def run(connector: Connector, credentials: dict[str, str]) -> BaseModel:
            return await self._runner.run(
                connector,
                action,
                params,
                credentials=credentials,
                config=connection.config,
                connection_id=connection.id,
            )

        with self._audit.timed(
            "tool.call" if current_actor().type == "agent" else "action.run",
            connection.owner_id,
            connection_id=connection.id,
            connector=connection.connector_slug,
            action=action.tool_name,
        ):
            if connection.status != Status.ACTIVE:
                raise self.not_connected(connection, reauth=connection.status == Status.NEEDS_REAUTH)
            return await self._with_credentials(connection, run)

    async def run_inline(
        self,
        owner_id: UUID,
        connector: Connector,
        action: Action,
        credentials: Mapping[str, object],
        params: Mapping[str, Any],
    ) -> BaseModel:
        """A credential used once and never stored (the one-shot `POST /connect/{connector}`)."""
        with self._audit.timed(
            "action.run",
            owner_id,
            connector=connector.slug,
            action=action.tool_name,
            detail={"oneShot": True},
        ):
            if connector.spec.credential_fields:
                fields = self.check_credentials(connector, credentials)
            elif isinstance(token := credentials.get("access_token"), str):
                fields = {"access_token": token}
            else:
                raise Invalid("token required")
            return await self._runner.run(connector, action, params, credentials=fields)

    async def register_hook(self, connection: ConnectionRecord, request: HookRequest) -> RegisteredHook:
        """Create a webhook at the provider with the connection's credential (raises ConnectorError)."""

        async def register(connector: Connector, credentials: dict[str, str]) -> RegisteredHook:
            return await self._runner.call(
                connector, credentials, lambda client: connector.register_hook(client, request)
            )

        return await self._with_credentials(connection, register)

    async def remove_hook(self, connection: ConnectionRecord, hook: HookRef) -> bool:
        """Remove a webhook that register_hook created (raises ConnectorError)."""

        async def remove(connector: Connector, credentials: dict[str, str]) -> bool:
            return await self._runner.call(
                connector, credentials, lambda client: connector.remove_hook(client, hook)
            )

        return await self._with_credentials(connection, remove)

    async def _with_credentials(
        self, connection: ConnectionRecord, use: Callable[[Connector, dict[str, str]], Awaitable[_T]]
    ) -> _T:
        """Call the provider with the connection's fresh credential; a credential the provider now
        refuses marks the connection for reconnecting and raises NotConnected."""
        connector = self._catalog[connection.connector_slug]
        if connection.status != Status.ACTIVE or connection.sealed_credentials is None:
            raise self.not_connected(connection)
        oauth = self._oauth.client(connector) if connection.auth_method == "oauth" else None
        try:
            credentials = dict(await self._tokens.fresh_credentials(connection, oauth))
        except ReauthorizationNeeded as refused:
            await self.needs_reauth(connection, str(refused))
            raise self.not_connected(connection, reauth=True) from None
        except OAuthFailure as failure:
            name = connector.spec.name
            raise UpstreamError(
                f"could not refresh the {name} token ({failure.error})", retryable=True
            ) from None
        try:
            return await use(connector, credentials)
        except InvalidCredentials:
            await self.needs_reauth(connection, "the provider rejected the stored credential")
            raise self.not_connected(connection, reauth=True) from None
