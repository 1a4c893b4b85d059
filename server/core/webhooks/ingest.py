"""Receiving provider webhooks: route the delivery to its endpoint, verify it with the provider's
scheme (the connector's webhook.py), and record it and its jobs durably before answering 2xx.

This is Tendril's hottest path (a provider may push thousands of events a second), so an
endpoint's routing (its record, opened secrets and target agents) is cached briefly, and the
delivery is written by the group-commit writer. A refused delivery stores nothing but a counter
on the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from uuid import UUID

import httpx

from auth.credentials import CredentialVault
from connectors import Catalog, Inbound, Refused, Reply
from server.core.identity import Identity
from server.core.metrics import Metrics
from server.core.webhooks.writer import DeliveryWriter
from storage.jobs import EndpointRecord, NewDelivery, WebhookStore
from storage.webhook_records import TriggerFiring

logger = logging.getLogger(__name__)

ROUTING_TTL = 5.0
SIGNING_KEYS_TTL = 3600.0
_OK = Reply(200, b"", "text/plain")
# Which event triggers an event key fires (server/core/workflows/triggers.py makes one per endpoint).
EventMatcher = Callable[[str], tuple[TriggerFiring, ...]]
EventTriggers = Callable[[EndpointRecord], Awaitable[EventMatcher]]
# A receiver URL's endpoint, its opened secrets, the agents its jobs go to and its event triggers.
_Route = tuple[EndpointRecord, dict[str, str], tuple[UUID, ...], EventMatcher]


def _no_triggers(_event_key: str) -> tuple[TriggerFiring, ...]:
    return ()


class SigningKeys:
    """Keys a provider publishes for verifying its deliveries (kid -> PEM), fetched and kept an hour."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    async def get(self, url: str) -> dict[str, str]:
        fetched_at, keys = self._cache.get(url, (0.0, {}))
        if keys and time.monotonic() - fetched_at < SIGNING_KEYS_TTL:
            return keys
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                reply = await client.get(url)
                reply.raise_for_status()
                keys = {str(k): str(v) for k, v in reply.json().items()}
            except (httpx.HTTPError, ValueError, AttributeError):
                logger.warning(
                    "could not fetch the signing keys at %s; deliveries they sign are refused", url
                )
                return {}
        self._cache[url] = (time.monotonic(), keys)
        return keys


class WebhookIngest:
    def __init__(
        self,
        *,
        hooks: WebhookStore,
        vault: CredentialVault,
        catalog: Catalog,
        identity: Identity,
        writer: DeliveryWriter,
        max_attempts: int,
        signing_key_urls: Mapping[str, str] | None = None,
        metrics: Metrics,
        event_triggers: EventTriggers | None = None,
    ) -> None:
        self._hooks = hooks
        self._event_triggers = event_triggers
        self._metrics = metrics
        self._vault = vault
        self._catalog = catalog
        self._identity = identity
        self._writer = writer
        self._max_attempts = max_attempts
        # Operator overrides of where a provider publishes its keys (TENDRIL_GOOGLE_CERTS_URL).
        self._signing_key_urls = dict(signing_key_urls or {})
        self._signing_keys = SigningKeys()
        # Endpoint, opened secrets and target agents by the URL's endpoint id, briefly: two reads
        # less per delivery. Changes (a new agent, a disabled endpoint) apply within ROUTING_TTL seconds.
        self._routing: dict[
            str, tuple[float, EndpointRecord, dict[str, str], tuple[UUID, ...], EventMatcher]
        ] = {}
        self._routing_lock = asyncio.Lock()

    async def receive(self, provider: str, endpoint_ref: str, inbound: Inbound) -> Reply:
        """Verify and record one delivery; raises Refused with the status to answer."""
        # The provider in the URL is the client's word: only the catalog's names become labels.
        label = provider if provider in self._catalog.receivers else "unknown"
        try:
            reply, result = await self._receive(provider, endpoint_ref, inbound)
        except Refused:
            self._metrics.webhook_delivery(label, "refused")
            raise
        except Exception:
            self._metrics.webhook_delivery(label, "error")
            raise
        self._metrics.webhook_delivery(label, result)
        return reply

    async def _receive(self, provider: str, endpoint_ref: str, inbound: Inbound) -> tuple[Reply, str]:
        """The reply and what became of the delivery: accepted (a challenge answered counts) or duplicate."""
        cached = self._routing.get(endpoint_ref)
        if cached is not None and cached[0] > time.monotonic():
            routing: _Route | None = cached[1:]
        else:
            routing = await self._route(endpoint_ref)
        if routing is None or routing[0].provider != provider:
            raise Refused(404, "unknown webhook endpoint")
        endpoint, secrets, targets, triggers = routing
        receiving = self._catalog.receivers[provider]
        keys_url = self._signing_keys_url(provider)
        receiver = receiving.new_receiver(await self._signing_keys.get(keys_url) if keys_url else None)
        try:
            outcome = receiver.receive(inbound, secrets)
        except Refused as refusal:
            await self._hooks.count_rejection(endpoint.id, f"{refusal.status}: {refusal.reason}")
            raise
        if isinstance(outcome, Reply):
            return outcome, "accepted"
        delivery = NewDelivery(
            endpoint,
            outcome.event_id,
            outcome.event_key,
            outcome.payload,  # parsed from JSON or a form by the receiver, so stored as is
            targets,
            self._max_attempts,
            # json_body decoded it as UTF-8 already, so this cannot fail
            inbound.body.decode() if outcome.payload_is_body else None,
            triggers(outcome.event_key),
        )
        new = await self._writer.write(delivery)
        return outcome.reply or _OK, "accepted" if new else "duplicate"

    def forget(self, endpoint_id: UUID) -> None:
        """Drop a retired endpoint's routing here at once (other replicas follow within ROUTING_TTL)."""
        self._routing.pop(str(endpoint_id), None)

    def forget_all(self) -> None:
        """Drop every endpoint's routing here at once (a trigger changed; other replicas follow
        within ROUTING_TTL)."""
        self._routing.clear()

    def _signing_keys_url(self, provider: str) -> str | None:
        webhook = self._catalog.receivers[provider].webhook
        declared = webhook.signing_keys_url if webhook else None
        return self._signing_key_urls.get(provider, declared) if declared else None

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
            endpoint = await self._hooks.endpoint(endpoint_id)
            if endpoint is None or endpoint.status != "active":
                self._routing.pop(endpoint_ref, None)
                return None
            secrets = self._vault.open(endpoint.id, endpoint.sealed_secrets)
            targets = tuple(await self._targets(endpoint))
            triggers = await self._event_triggers(endpoint) if self._event_triggers else _no_triggers
            self._routing[endpoint_ref] = (
                time.monotonic() + ROUTING_TTL,
                endpoint,
                secrets,
                targets,
                triggers,
            )
            return endpoint, secrets, targets, triggers

    async def _targets(self, endpoint: EndpointRecord) -> list[UUID]:
        """The endpoint's agents, or the owner's agents that allow the provider; always only those
        that still allow it."""
        agents = await self._identity.list_agents(endpoint.owner_id)
        allowed = [a for a in agents if endpoint.provider in a.allowed_connectors]
        if endpoint.agent_ids is None:
            return [a.id for a in allowed]
        chosen = set(endpoint.agent_ids)
        return [a.id for a in allowed if str(a.id) in chosen]
