"""Webhook endpoints: an owner sets one up on a connection (pasting its URL into the provider's
console, or letting Tendril register the hook through the provider's API), lists them, and
retires them (removing the hook Tendril registered)."""

from __future__ import annotations

import logging
import secrets as token_source
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit
from uuid import UUID

from auth.credentials import CredentialVault
from connectors import Catalog, Connector, HookRef, HookRequest, RegisteredHook
from connectors.errors import ConnectorError, Forbidden, InvalidInput, MissingScopes, NotConnected
from connectors.errors import NotFound as ProviderNotFound
from server.core.connections import Connections
from server.core.errors import Conflict, Invalid, NotFound, Upstream
from server.core.identity import Identity
from server.core.links import Links
from server.core.webhooks.ingest import WebhookIngest
from storage.jobs import EndpointRecord, WebhookStore
from storage.repositories import ConnectionRecord, ConnectionStatus

logger = logging.getLogger(__name__)

# The endpoint id is the associated data of its sealed secrets: a row's secrets open only there.
_SECRETS_PURPOSE = "webhook-endpoint"
# Sealed next to the provider's secrets when Tendril registered the hook itself.
_REGISTERED, _HOOK_ID, _HOOK_TARGET = "_registered_at_provider", "_provider_hook_id", "_provider_hook_target"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


@dataclass(frozen=True, slots=True)
class Registration:
    """Register the hook through the provider's API: on what (GitHub's owner/name), for which events."""

    repository: str | None = None
    events: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Setup:
    """What the owner must do (paste the URL) or what Tendril did (registered the hook)."""

    registered: bool
    how: str
    provider_hook_id: str | None = None


@dataclass(frozen=True, slots=True)
class Removal:
    """What happened at the provider when an endpoint was retired."""

    removed: bool
    how: str


def _registered_only(receiving: Connector) -> bool:
    """A provider whose receiver takes no secret from the owner (Telegram: there is no console to
    copy one from) gets its hook through the API, always: setup registers it, deletion removes it."""
    return receiving.webhook is not None and not receiving.webhook.secrets


class WebhookEndpoints:
    def __init__(
        self,
        *,
        hooks: WebhookStore,
        vault: CredentialVault,
        catalog: Catalog,
        connections: Connections,
        identity: Identity,
        ingest: WebhookIngest,
        links: Links,
        allow_insecure_urls: bool,
    ) -> None:
        self._hooks = hooks
        self._vault = vault
        self._catalog = catalog
        self._connections = connections
        self._identity = identity
        self._ingest = ingest
        self._links = links
        self._allow_insecure_urls = allow_insecure_urls

    def url_for(self, endpoint: EndpointRecord) -> str:
        return self._links.receiver(endpoint.provider, endpoint.id)

    async def list(self, owner_id: UUID) -> list[EndpointRecord]:
        return await self._hooks.list_endpoints(owner_id)

    async def find_any(self, endpoint_id: UUID) -> EndpointRecord | None:
        """For the operator's CLI, which acts for whichever owner holds the endpoint."""
        return await self._hooks.endpoint(endpoint_id)

    def _check_public_base(self) -> None:
        """Providers must never be pointed at an internal or plain-http address."""
        if self._allow_insecure_urls:
            return
        base = self._links.webhook_base_url
        parts = urlsplit(base)
        host = parts.hostname or ""
        if parts.scheme != "https" or host in _LOCAL_HOSTS or host.endswith(".local"):
            raise Invalid(
                f"webhook URLs would be {base}: set TENDRIL_WEBHOOK_BASE_URL to the public https "
                "address providers can reach (TENDRIL_WEBHOOK_ALLOW_INSECURE_URLS=true only in development)"
            )

    # -- setup ----------------------------------------------------------------------------------------
    async def setup(
        self,
        owner_id: UUID,
        connection_id: UUID,
        *,
        provider: str,
        secrets: Mapping[str, str] | None = None,
        agents: Sequence[UUID] | None = None,
        register: Registration | bool | None = None,
    ) -> tuple[EndpointRecord, Setup]:
        """Create an endpoint on the connection, for `agents` (default: every agent allowing the provider)."""
        receivers = self._catalog.receivers
        receiving = receivers.get(provider)
        if receiving is None:
            raise Invalid(
                f"unknown webhook provider: {provider!r} ({', '.join(sorted(receivers))})", field="provider"
            )
        connection = await self._connections.find(owner_id, connection_id)
        if connection is None or connection.status == ConnectionStatus.REVOKED:
            raise NotFound("connection not found")
        if provider in self._catalog and connection.connector_slug != provider:
            raise Invalid(
                f"connection {connection_id} is a {connection.connector_slug} connection, not {provider}"
            )
        self._check_public_base()
        endpoint_id = UUID(bytes=token_source.token_bytes(16), version=4)
        url = self._links.receiver(provider, endpoint_id)
        if register is None and _registered_only(receiving):
            register = True
        hook_request = self._hook_request(receiving, register, url)
        given = {} if hook_request is not None else self._check_secrets(receiving, secrets)
        agent_ids = await self._check_agents(owner_id, provider, agents)
        if hook_request is not None:
            hook = await self._register_at_provider(connection, hook_request)
            # Kept sealed with the secrets: what removing the hook at the provider will need.
            given = {**hook.secrets, _REGISTERED: "true"}
            if hook.hook_id is not None:
                given[_HOOK_ID] = hook.hook_id
            if hook_request.target is not None:
                given[_HOOK_TARGET] = hook_request.target
            setup = Setup(True, f"created {hook.description}", hook.hook_id)
        else:
            setup = Setup(False, f"paste {url} into the provider's console")
        sealed = self._vault.seal(endpoint_id, {**given, "_purpose": _SECRETS_PURPOSE})
        endpoint = await self._hooks.create_endpoint(
            owner_id,
            provider=provider,
            connection_id=connection_id,
            sealed_secrets=sealed,
            agent_ids=[str(a) for a in agent_ids] if agent_ids is not None else None,
            endpoint_id=endpoint_id,
        )
        return endpoint, setup

    @staticmethod
    def _hook_request(
        receiving: Connector, register: Registration | bool | None, url: str
    ) -> HookRequest | None:
        if register is None or register is False:
            return None
        if not receiving.registers_hooks:
            raise Invalid(
                f"{receiving.slug} hooks are created in its console: give the secrets and paste the URL",
                field="register",
            )
        options = Registration() if register is True else register
        # The secret serves providers that sign with one we pick (GitHub, Telegram).
        return HookRequest(
            url=url, secret=token_source.token_urlsafe(32), events=options.events, target=options.repository
        )

    async def _register_at_provider(
        self, connection: ConnectionRecord, request: HookRequest
    ) -> RegisteredHook:
        try:
            return await self._connections.register_hook(connection, request)
        except NotConnected:
            raise Conflict(f"the {connection.connector_slug} connection is not connected yet") from None
        except (InvalidInput, ProviderNotFound, Forbidden, MissingScopes) as error:
            # Usually the credential may not manage hooks there (GitHub answers 404 for that).
            raise Invalid(
                f"could not create the hook with this connection's credential: {error.message}"
            ) from None
        except ConnectorError as error:
            raise Upstream(f"could not create the hook: {error.message}") from None

    @staticmethod
    def _check_secrets(receiving: Connector, secrets: Mapping[str, str] | None) -> dict[str, str]:
        needed = receiving.webhook.secrets if receiving.webhook else ()
        if secrets is None:
            raise Invalid(f"secrets must be an object with {', '.join(needed)}", field="secrets")
        missing = [name for name in needed if not secrets.get(name)]
        if missing:
            raise Invalid(f"{receiving.slug} webhooks need secrets: {', '.join(missing)}", field="secrets")
        return {name: secrets[name] for name in needed}

    async def _check_agents(
        self, owner_id: UUID, provider: str, agents: Sequence[UUID] | None
    ) -> list[UUID] | None:
        if agents is None:
            return None
        owned = {a.id: a for a in await self._identity.list_agents(owner_id)}
        for agent_id in agents:
            agent = owned.get(agent_id)
            if agent is None:
                raise Invalid(f"unknown agent: {agent_id}", field="agents")
            if provider not in agent.allowed_connectors:
                raise Invalid(
                    f"agent {agent.name} does not allow {provider}: add it to allowedConnectors",
                    field="agents",
                )
        return list(agents)

    # -- removal --------------------------------------------------------------------------------------
    async def delete(self, owner_id: UUID, endpoint_id: UUID) -> tuple[EndpointRecord, Removal]:
        """Retire an endpoint; a hook Tendril registered is removed at the provider first (so a
        failure there leaves the endpoint in place to try again)."""
        endpoint = await self._hooks.endpoint(endpoint_id, owner_id)
        if endpoint is None:
            raise NotFound("webhook endpoint not found")
        removal = await self._remove_at_provider(endpoint)
        deleted = await self._hooks.delete_endpoint(owner_id, endpoint_id)
        if deleted is None:  # removed meanwhile by another request
            raise NotFound("webhook endpoint not found")
        self._ingest.forget(endpoint_id)
        return deleted, removal

    async def _remove_at_provider(self, endpoint: EndpointRecord) -> Removal:
        receiving = self._catalog.receivers[endpoint.provider]
        url, provider = self.url_for(endpoint), receiving.spec.name
        by_hand = f"remove the webhook that delivers to {url} in {provider}'s settings"
        secrets = self._vault.open(endpoint.id, endpoint.sealed_secrets)
        if _REGISTERED not in secrets and not _registered_only(receiving):
            return Removal(False, f"it was created in {provider}'s console: {by_hand}")
        connection = (
            await self._connections.find(endpoint.owner_id, endpoint.connection_id)
            if endpoint.connection_id
            else None
        )
        if connection is None or connection.status == ConnectionStatus.REVOKED:
            return Removal(False, f"its connection is gone: {by_hand}")
        hook = HookRef(url=url, hook_id=secrets.get(_HOOK_ID), target=secrets.get(_HOOK_TARGET))
        try:
            removed = await self._connections.remove_hook(connection, hook)
        except NotConnected as error:  # no usable credential: do not hold the endpoint hostage
            return Removal(
                False, f"the connection cannot reach {provider} (reconnect: {error.connect_url}): {by_hand}"
            )
        except ConnectorError as error:
            logger.warning("could not remove the %s hook of endpoint %s: %s", provider, endpoint.id, error)
            raise Upstream(
                f"could not remove the hook at {provider} ({error.message}); try again, or {by_hand}"
            ) from None
        if not removed:  # gone already, or (older GitHub endpoints) its repository was not kept
            return Removal(
                False, f"{provider} has no hook of Tendril's left to remove; if one delivers, {by_hand}"
            )
        return Removal(True, f"removed the hook at {provider}")
