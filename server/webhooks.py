"""Provider webhooks into durable agent jobs: endpoint setup, the shared receiver, job consumption.

Receiving: read the raw body (bounded), verify with the provider's scheme (the connector's webhook.py),
then record the delivery and its jobs in one transaction, deduplicated by the provider's event id,
and only then answer 2xx. A refused delivery stores nothing but a counter on the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import secrets as token_source
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx

from auth.credentials import CredentialVault
from connectors import (
    Backoff,
    Catalog,
    Connector,
    HookRef,
    HookRequest,
    Inbound,
    Refused,
    RegisteredHook,
    Reply,
)
from connectors.errors import (
    ConnectorError,
    Forbidden,
    InvalidInput,
    MissingScopes,
    NotConnected,
    NotFound,
)
from server.errors import ApiError
from server.settings import Settings
from storage.jobs import EndpointRecord, JobQueue, JobRecord, NewDelivery, WebhookStore
from storage.notices import ChangeNotices
from storage.repositories import ConnectionRecord, ConnectionStatus, Store

logger = logging.getLogger(__name__)

# The endpoint id is the associated data of its sealed secrets: a row's secrets open only there.
_SECRETS_PURPOSE = "webhook-endpoint"
# Sealed next to the provider's secrets when Tendril registered the hook itself.
_REGISTERED, _HOOK_ID, _HOOK_TARGET = "_registered_at_provider", "_provider_hook_id", "_provider_hook_target"
ROUTING_TTL = 5.0
WRITE_BATCH = 256
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
_OK = Reply(200, b"", "text/plain")
_JOBS_NOTICE = "jobs"  # storage.notices topic: jobs:<agent id>, when an agent has new jobs
# A receiver URL's endpoint, its opened secrets and the agents its jobs go to.
_Route = tuple[EndpointRecord, dict[str, str], tuple[UUID, ...]]


RECEIVER_PREFIX = "/api/v1/connectors/webhooks/"


def _only_by_api(receiving: Connector) -> bool:
    """A provider whose receiver takes no secret from the owner (Telegram: there is no console to
    copy one from) gets its hook through the API, always: setup registers it, deletion removes it."""
    return receiving.webhook is not None and not receiving.webhook.secrets


def receiver_path(provider: str, endpoint_id: UUID) -> str:
    return f"{RECEIVER_PREFIX}{provider}/{endpoint_id}"


class WebhookService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        vault: CredentialVault,
        catalog: Catalog,
        *,
        register_hook: Callable[[ConnectionRecord, HookRequest], Awaitable[RegisteredHook]],
        remove_hook: Callable[[ConnectionRecord, HookRef], Awaitable[bool]],
        notices: ChangeNotices,
    ) -> None:
        self.settings = settings
        self._register_hook = register_hook
        self._remove_hook = remove_hook
        self.store = store
        self.vault = vault
        self.catalog = catalog
        self.hooks = WebhookStore(store.engine)
        self.jobs = JobQueue(store.engine, backoff=Backoff(settings.job_retry_base_seconds, 600).delay)
        # Told on every replica (storage.notices) that an agent has new jobs.
        self.listeners: list[Callable[[UUID], Awaitable[None]]] = []
        self.notices = notices
        notices.subscribe(self._on_notice)
        self._google_certs: tuple[float, dict[str, str]] = (0.0, {})
        # Endpoint, opened secrets and target agents by the URL's endpoint id, briefly: two reads
        # less per delivery. Changes (a new agent, a disabled endpoint) apply within ROUTING_TTL seconds.
        self._routing: dict[str, tuple[float, EndpointRecord, dict[str, str], tuple[UUID, ...]]] = {}
        self._routing_lock = asyncio.Lock()
        self._writes: asyncio.Queue[tuple[NewDelivery, asyncio.Future[bool]] | None] | None = None

    # -- URLs --------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return (self.settings.webhook_base_url or self.settings.public_url).rstrip("/")

    def url_for(self, endpoint: EndpointRecord) -> str:
        return self.base_url + receiver_path(endpoint.provider, endpoint.id)

    def _check_public_base(self) -> None:
        """Providers must never be pointed at an internal or plain-http address."""
        if self.settings.webhook_allow_insecure_urls:
            return
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if parts.scheme != "https" or host in _LOCAL_HOSTS or host.endswith(".local"):
            raise ApiError(
                400,
                f"webhook URLs would be {self.base_url}: set TENDRIL_WEBHOOK_BASE_URL to the public https "
                "address providers can reach (TENDRIL_WEBHOOK_ALLOW_INSECURE_URLS=true only in development)",
            )

    # -- setup -------------------------------------------------------------------------------------
    async def setup(
        self,
        owner_id: UUID,
        connection_id: UUID,
        *,
        provider: Any,
        secrets: Any,
        agents: Any = None,
        register: Any = None,
    ) -> tuple[EndpointRecord, dict[str, Any]]:
        """Create an endpoint; returns it and what the owner must do (or what was done).

        `register` ({"repository"?, "events"?}) asks Tendril to create the hook through the
        provider's API with the connection's credential, instead of the owner pasting the URL."""
        receivers = self.catalog.receivers
        if not isinstance(provider, str) or provider not in receivers:
            raise ApiError(400, f"unknown webhook provider: {provider!r} ({', '.join(sorted(receivers))})")
        connection = await self.store.get_connection(owner_id, connection_id)
        if connection is None or connection.status == ConnectionStatus.REVOKED:
            raise ApiError(404, "connection not found")
        if provider in self.catalog and connection.connector_slug != provider:
            raise ApiError(
                400, f"connection {connection_id} is a {connection.connector_slug} connection, not {provider}"
            )
        self._check_public_base()
        endpoint_id = UUID(bytes=token_source.token_bytes(16), version=4)
        url = self.base_url + receiver_path(str(provider), endpoint_id)
        if register is None and _only_by_api(receivers[provider]):
            register = True
        hook_request = self._check_register(str(provider), register, url)
        given = {} if hook_request is not None else self._check_secrets(str(provider), secrets)
        agent_ids = await self._check_agents(owner_id, str(provider), agents)
        if hook_request is not None:
            hook = await self._register_at_provider(connection, hook_request)
            # Kept sealed with the secrets: what removing the hook at the provider will need.
            given = {**hook.secrets, _REGISTERED: "true"}
            setup: dict[str, Any] = {"registered": True, "how": f"created {hook.description}"}
            if hook.hook_id is not None:
                given[_HOOK_ID] = setup["providerHookId"] = hook.hook_id
            if hook_request.target is not None:
                given[_HOOK_TARGET] = hook_request.target
        else:
            setup = {"registered": False, "how": f"paste {url} into the provider's console"}
        sealed = self.vault.seal(endpoint_id, {**given, "_purpose": _SECRETS_PURPOSE})
        endpoint = await self.hooks.create_endpoint(
            owner_id,
            provider=str(provider),
            connection_id=connection_id,
            sealed_secrets=sealed,
            agent_ids=[str(a) for a in agent_ids] if agent_ids is not None else None,
            endpoint_id=endpoint_id,
        )
        return endpoint, setup

    def _check_register(self, provider: str, register: Any, url: str) -> HookRequest | None:
        if register is None or register is False:
            return None
        connector = self.catalog.get(provider)
        if connector is None or not connector.registers_hooks:
            raise ApiError(
                400, f"{provider} hooks are created in its console: give the secrets and paste the URL"
            )
        options = {} if register is True else register
        if not isinstance(options, dict) or set(options) - {"repository", "events"}:
            raise ApiError(400, 'register must be true or {"repository"?: "owner/name", "events"?: [...]}')
        events = options.get("events") or []
        if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
            raise ApiError(400, "register.events must be a list of event names")
        repository = options.get("repository")
        if repository is not None and not isinstance(repository, str):
            raise ApiError(400, "register.repository must be owner/name")
        # The secret serves providers that sign with one we pick (GitHub, Telegram).
        secret = token_source.token_urlsafe(32)
        return HookRequest(url=url, secret=secret, events=tuple(events), target=repository)

    async def _register_at_provider(
        self, connection: ConnectionRecord, request: HookRequest
    ) -> RegisteredHook:
        try:
            return await self._register_hook(connection, request)
        except NotConnected:
            raise ApiError(409, f"the {connection.connector_slug} connection is not connected yet") from None
        except (InvalidInput, NotFound, Forbidden, MissingScopes) as error:
            # Usually the credential may not manage hooks there (GitHub answers 404 for that).
            raise ApiError(
                400, f"could not create the hook with this connection's credential: {error.message}"
            ) from None
        except ConnectorError as error:
            raise ApiError(502, f"could not create the hook: {error.message}") from None

    # -- removal -----------------------------------------------------------------------------------
    async def delete(self, owner_id: UUID, endpoint_id: UUID) -> tuple[EndpointRecord, dict[str, Any]]:
        """Retire an endpoint; a hook Tendril registered is removed at the provider first (so a
        failure there leaves the endpoint in place to try again). Returns it and what happened."""
        endpoint = await self.hooks.endpoint(endpoint_id, owner_id)
        if endpoint is None:
            raise ApiError(404, "webhook endpoint not found")
        at_provider = await self._remove_at_provider(endpoint)
        deleted = await self.hooks.delete_endpoint(owner_id, endpoint_id)
        if deleted is None:  # removed meanwhile by another request
            raise ApiError(404, "webhook endpoint not found")
        self._routing.pop(str(endpoint_id), None)  # other replicas follow within ROUTING_TTL
        return deleted, at_provider

    async def _remove_at_provider(self, endpoint: EndpointRecord) -> dict[str, Any]:
        url, provider = self.url_for(endpoint), self._provider_name(endpoint.provider)
        by_hand = f"remove the webhook that delivers to {url} in {provider}'s settings"
        secrets = self.vault.open(endpoint.id, endpoint.sealed_secrets)
        if _REGISTERED not in secrets and not _only_by_api(self.catalog.receivers[endpoint.provider]):
            return {"removed": False, "how": f"it was created in {provider}'s console: {by_hand}"}
        connection = (
            await self.store.get_connection(endpoint.owner_id, endpoint.connection_id)
            if endpoint.connection_id
            else None
        )
        if connection is None or connection.status == ConnectionStatus.REVOKED:
            return {"removed": False, "how": f"its connection is gone: {by_hand}"}
        hook = HookRef(url=url, hook_id=secrets.get(_HOOK_ID), target=secrets.get(_HOOK_TARGET))
        try:
            removed = await self._remove_hook(connection, hook)
        except NotConnected as error:  # no usable credential: do not hold the endpoint hostage
            return {
                "removed": False,
                "how": f"the connection cannot reach {provider} (reconnect: {error.connect_url}): {by_hand}",
            }
        except ConnectorError as error:
            logger.warning("could not remove the %s hook of endpoint %s: %s", provider, endpoint.id, error)
            raise ApiError(
                502, f"could not remove the hook at {provider} ({error.message}); try again, or {by_hand}"
            ) from None
        if not removed:  # gone already, or (older GitHub endpoints) its repository was not kept
            return {
                "removed": False,
                "how": f"{provider} has no hook of Tendril's left to remove; if one delivers, {by_hand}",
            }
        return {"removed": True, "how": f"removed the hook at {provider}"}

    def _provider_name(self, provider: str) -> str:
        return self.catalog.receivers[provider].spec.name

    def _check_secrets(self, provider: str, secrets: Any) -> dict[str, str]:
        webhook = self.catalog.receivers[provider].webhook
        needed = webhook.secrets if webhook else ()
        if not isinstance(secrets, dict):
            raise ApiError(400, f"secrets must be an object with {', '.join(needed)}")
        missing = [name for name in needed if not isinstance(secrets.get(name), str) or not secrets[name]]
        if missing:
            raise ApiError(400, f"{provider} webhooks need secrets: {', '.join(missing)}")
        return {name: str(secrets[name]) for name in needed}

    async def _check_agents(self, owner_id: UUID, provider: str, agents: Any) -> list[UUID] | None:
        if agents is None:
            return None
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            raise ApiError(400, "agents must be a list of agent ids")
        owned = {str(a.id): a for a in await self.store.list_agents(owner_id)}
        ids: list[UUID] = []
        for agent_id in agents:
            agent = owned.get(agent_id)
            if agent is None:
                raise ApiError(400, f"unknown agent: {agent_id}")
            if provider not in agent.allowed_connectors:
                raise ApiError(
                    400, f"agent {agent.name} does not allow {provider}: add it to allowedConnectors"
                )
            ids.append(agent.id)
        return ids

    # -- receiving ---------------------------------------------------------------------------------
    async def receive(self, provider: str, endpoint_ref: str, inbound: Inbound) -> Reply:
        """Verify and record one delivery; raises Refused with the status to answer."""
        cached = self._routing.get(endpoint_ref)
        if cached is not None and cached[0] > time.monotonic():
            routing: _Route | None = cached[1:]
        else:
            routing = await self._route(endpoint_ref)
        if routing is None or routing[0].provider != provider:
            raise Refused(404, "unknown webhook endpoint")
        endpoint, secrets, targets = routing
        receiving = self.catalog.receivers[provider]
        keys_url = receiving.webhook.signing_keys_url if receiving.webhook else None
        receiver = receiving.new_receiver(await self._google_signing_certs() if keys_url else None)
        try:
            outcome = receiver.receive(inbound, secrets)
        except Refused as refusal:
            await self.hooks.count_rejection(endpoint.id, f"{refusal.status}: {refusal.reason}")
            raise
        if isinstance(outcome, Reply):
            return outcome
        delivery = NewDelivery(
            endpoint,
            outcome.event_id,
            outcome.event_key,
            outcome.payload,  # parsed from JSON or a form by the receiver, so stored as is
            targets,
            self.settings.job_max_attempts,
            # json_body decoded it as UTF-8 already, so this cannot fail
            inbound.body.decode() if outcome.payload_is_body else None,
        )
        await self._write(delivery)
        return outcome.reply or _OK

    async def _route(self, endpoint_ref: str) -> _Route | None:
        # One refresh at a time: when the entry expires under load, the deliveries arriving
        # meanwhile wait for it instead of each reading the endpoint (and each taking a DB connection).
        async with self._routing_lock:
            cached = self._routing.get(endpoint_ref)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1:]
            try:
                endpoint_id = UUID(endpoint_ref)
            except ValueError:
                return None
            if str(endpoint_id) != endpoint_ref:  # only the form Tendril hands out (one cache entry each)
                return None
            endpoint = await self.hooks.endpoint(endpoint_id)
            if endpoint is None or endpoint.status != "active":
                self._routing.pop(endpoint_ref, None)
                return None
            secrets = self.vault.open(endpoint.id, endpoint.sealed_secrets)
            targets = tuple(await self._targets(endpoint))
            self._routing[endpoint_ref] = (time.monotonic() + ROUTING_TTL, endpoint, secrets, targets)
            return endpoint, secrets, targets

    async def _write(self, delivery: NewDelivery) -> bool:
        """Through the group-commit writer when it runs (one transaction for many deliveries, and
        no two writers fighting over SQLite's lock); directly otherwise."""
        if self._writes is None:
            [new] = await self.hooks.record_deliveries([delivery])
            await self._announce([(delivery, new)])
            return new
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._writes.put_nowait((delivery, done))  # unbounded: each waiting request holds one
        return await done

    async def run_writer(self) -> None:
        """The group-commit loop (one per process): takes whatever deliveries are waiting, up to
        WRITE_BATCH, writes them in one transaction, and answers each."""
        self._writes = asyncio.Queue()
        try:
            while (first := await self._writes.get()) is not None:
                batch = [first]
                while len(batch) < WRITE_BATCH and not self._writes.empty():
                    if (item := self._writes.get_nowait()) is None:
                        self._writes.put_nowait(None)  # stop after this batch
                        break
                    batch.append(item)
                try:
                    results = await self.hooks.record_deliveries([delivery for delivery, _ in batch])
                except Exception as exc:  # each waiting request answers 500; providers retry
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, done), new in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(new)
                await self._announce(zip((delivery for delivery, _ in batch), results, strict=True))
        finally:
            pending, self._writes = self._writes, None
            while not pending.empty():  # not written, so not acknowledged: the provider retries
                item = pending.get_nowait()
                if item is not None and not item[1].done():
                    item[1].set_exception(RuntimeError("shutting down"))

    async def _announce(self, written: Iterable[tuple[NewDelivery, bool]]) -> None:
        """Once per agent that got new jobs, not once per delivery: a batch of a hundred events for
        one agent is one notice."""
        agents = dict.fromkeys(agent for delivery, new in written if new for agent in delivery.agent_ids)
        await self.announce_jobs(agents)

    async def announce_jobs(self, agent_ids: Iterable[UUID]) -> None:
        """Tell every replica's listeners (MCP subscribers, the pusher) that these agents have jobs."""
        for agent_id in agent_ids:
            try:
                await self.notices.publish(f"{_JOBS_NOTICE}:{agent_id}")
            except Exception:  # a notification must never undo an acknowledged delivery
                logger.exception("could not announce new jobs")

    async def _on_notice(self, topic: str) -> None:
        kind, _, ref = topic.partition(":")
        if kind != _JOBS_NOTICE:
            return
        for listener in self.listeners:
            try:
                await listener(UUID(ref))
            except Exception:
                logger.exception("job listener failed")

    def stop_writer(self) -> None:
        """Let the writer finish what is queued and return (see JobPusher.stop for why not cancel)."""
        if self._writes is not None:
            self._writes.put_nowait(None)

    async def _targets(self, endpoint: EndpointRecord) -> list[UUID]:
        """The endpoint's agents, or the owner's agents that allow the provider; always only those
        that still allow it."""
        agents = await self.store.list_agents(endpoint.owner_id)
        allowed = [a for a in agents if endpoint.provider in a.allowed_connectors]
        if endpoint.agent_ids is None:
            return [a.id for a in allowed]
        chosen = set(endpoint.agent_ids)
        return [a.id for a in allowed if str(a.id) in chosen]

    async def _google_signing_certs(self) -> dict[str, str]:
        fetched_at, certs = self._google_certs
        if certs and time.monotonic() - fetched_at < 3600:
            return certs
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                reply = await client.get(self.settings.google_certs_url)
                reply.raise_for_status()
                certs = {str(k): str(v) for k, v in reply.json().items()}
            except (httpx.HTTPError, ValueError, AttributeError):
                logger.warning("could not fetch Google's signing certificates; Gmail pushes are refused")
                return {}
        self._google_certs = (time.monotonic(), certs)
        return certs


def render_endpoint(endpoint: EndpointRecord, url: str) -> dict[str, Any]:
    return {
        "id": str(endpoint.id),
        "provider": endpoint.provider,
        "url": url,
        "status": endpoint.status,
        "connectionId": str(endpoint.connection_id) if endpoint.connection_id else None,
        "agents": endpoint.agent_ids,
        "deliveryCount": endpoint.delivery_count,
        "duplicateCount": endpoint.duplicate_count,
        "rejectedCount": endpoint.rejected_count,
        "lastDeliveryAt": endpoint.last_delivery_at.isoformat() if endpoint.last_delivery_at else None,
        "lastError": endpoint.last_error,
        "lastErrorAt": endpoint.last_error_at.isoformat() if endpoint.last_error_at else None,
        "createdAt": endpoint.created_at.isoformat(),
    }


def render_job(job: JobRecord) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "agentId": str(job.agent_id),
        "provider": job.provider,
        "eventKey": job.event_key,
        "status": job.status,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "runAfter": job.run_after.isoformat(),
        "leaseUntil": job.lease_until.isoformat() if job.lease_until else None,
        "lastError": job.last_error,
        "result": job.result,
        "payload": job.payload,
        "createdAt": job.created_at.isoformat(),
        "finishedAt": job.finished_at.isoformat() if job.finished_at else None,
    }
