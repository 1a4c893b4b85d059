"""Who is asking: owners, their API keys (with permissions), their agents, and browser sessions.

Keys are random, shown once and stored as digests (auth.api_keys). A browser session is opened by
signing in with an owner key; only the SHA-256 digest of its cookie token is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Literal
from uuid import UUID

from auth import api_keys
from connectors import Catalog
from server.core.audit import Actor, Audit
from server.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated, did_you_mean
from server.core.throttle import AuthThrottle
from storage.flows import FlowStore, WebSession
from storage.repositories import AgentRecord, AlreadyExists, ApiKeyRecord, Owner, Store

SESSION_TTL = timedelta(hours=12)
RATE_LIMIT_MAX = 1_000_000  # requests or tool calls per minute one key or agent may be given


class Keep(Enum):
    """An update that leaves a value as it is (None would mean "back to the default")."""

    KEEP = "keep"


KEEP = Keep.KEEP
LimitChange = int | None | Literal[Keep.KEEP]


def check_rate_limit(value: int | None, field: str) -> int | None:
    if value is not None and not 1 <= value <= RATE_LIMIT_MAX:
        raise Invalid(f"{field} must be between 1 and {RATE_LIMIT_MAX} per minute, or null", field=field)
    return value


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
_MAX_SESSION_TOKEN = 200


@dataclass(frozen=True, slots=True)
class OwnerPrincipal:
    """Whoever presented an owner API key."""

    owner_id: UUID
    key_id: UUID
    permissions: tuple[str, ...]
    rate_limit: int | None = None  # requests per minute; None: the server's default

    def require(self, permission: api_keys.Permission) -> None:
        if not api_keys.grants(self.permissions, permission):
            raise Forbidden(f"this API key lacks the '{permission}' permission")


@dataclass(frozen=True, slots=True)
class AgentPrincipal:
    """An agent at work (over MCP): whose it is and which connectors it may use."""

    agent_id: UUID
    owner_id: UUID
    allowed_connectors: frozenset[str]
    tool_rate_limit: int | None = None  # tool calls per minute; None: the server's default

    @classmethod
    def of(cls, agent: AgentRecord) -> AgentPrincipal:
        return cls(agent.id, agent.owner_id, frozenset(agent.allowed_connectors), agent.tool_rate_limit)

    def allows(self, slug: str) -> bool:
        return slug in self.allowed_connectors


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: ApiKeyRecord
    plaintext: str


@dataclass(frozen=True, slots=True)
class CreatedAgent:
    record: AgentRecord
    plaintext_key: str


@dataclass(frozen=True, slots=True)
class OpenedSession:
    token: str  # goes into the cookie; only its digest is stored
    session: WebSession


def check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise Invalid(f"{what} must be 1-100 characters of letters, digits, spaces, '.', '_' or '-'")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Identity:
    def __init__(
        self, store: Store, flows: FlowStore, catalog: Catalog, throttle: AuthThrottle, *, audit: Audit
    ) -> None:
        self._store = store
        self._audit = audit
        self._flows = flows
        self._catalog = catalog
        self.throttle = throttle

    # -- owners -----------------------------------------------------------------------------------
    async def create_owner(self, name: str) -> Owner:
        check_name(name, "owner name")
        try:
            return await self._store.create_owner(name)
        except AlreadyExists as exc:
            raise Conflict(str(exc)) from None

    async def owner_named(self, name: str) -> Owner:
        owner = await self._store.owner_by_name(name)
        if owner is None:
            raise NotFound(f"no owner named {name!r}")
        return owner

    async def owners(self) -> list[Owner]:
        return await self._store.list_owners()

    async def delete_owner(self, owner_id: UUID) -> None:
        """Remove the owner with their keys, agents and records; revoke their connections first
        (server/core/connections.py) so tokens are revoked at the providers too."""
        if not await self._store.delete_owner(owner_id):
            raise NotFound("owner not found")

    async def has_owners(self) -> bool:
        return await self._store.count_owners() > 0

    # -- API keys ---------------------------------------------------------------------------------
    async def create_api_key(
        self,
        owner_id: UUID,
        *,
        name: str,
        permissions: Sequence[str] | None = None,
        rate_limit: int | None = None,
    ) -> CreatedKey:
        check_name(name, "key name")
        check_rate_limit(rate_limit, "rateLimit")
        if permissions is not None and not permissions:
            raise Invalid(
                "permissions must name at least one of " + ", ".join(api_keys.PERMISSIONS),
                field="permissions",
            )
        chosen = list(dict.fromkeys(permissions or api_keys.DEFAULT_PERMISSIONS))
        unknown = [p for p in chosen if p not in api_keys.PERMISSIONS]
        if unknown:
            raise Invalid(
                f"unknown permission(s) {unknown}; choose from {list(api_keys.PERMISSIONS)}",
                field="permissions",
            )
        key = api_keys.new_key()
        record = await self._store.create_api_key(
            owner_id,
            name=name,
            key_hash=key.digest,
            key_prefix=key.display_prefix,
            permissions=chosen,
            rate_limit=rate_limit,
        )
        self._audit.record(
            "key.create",
            owner_id,
            detail={"keyId": str(record.id), "name": record.name, "permissions": list(record.permissions)},
        )
        return CreatedKey(record, key.plaintext)

    async def update_api_key(
        self, owner_id: UUID, key_id: UUID, *, name: str | None = None, rate_limit: LimitChange = KEEP
    ) -> ApiKeyRecord:
        """Rename a live key or change its rate limit (None: back to the server's default)."""
        values: dict[str, object] = {}
        if name is not None:
            check_name(name, "key name")
            values["name"] = name
        if rate_limit is not KEEP:
            values["rate_limit"] = check_rate_limit(rate_limit, "rateLimit")
        record = await self._store.update_api_key(owner_id, key_id, **values)
        if record is None:
            raise NotFound("API key not found")
        self._audit.record("key.update", owner_id, detail={"keyId": str(key_id), "changed": sorted(values)})
        return record

    async def list_api_keys(self, owner_id: UUID) -> list[ApiKeyRecord]:
        return await self._store.list_api_keys(owner_id)

    async def rotate_api_key(self, owner_id: UUID, key_id: UUID) -> CreatedKey:
        """A new secret for the same key (name, permissions, rate limit); the old one and the browser
        sessions signed in with it stop working at once."""
        key = api_keys.new_key()
        record = await self._store.replace_api_key(
            owner_id, key_id, key_hash=key.digest, key_prefix=key.display_prefix
        )
        if record is None:
            raise NotFound("API key not found")
        self._audit.record("key.rotate", owner_id, detail={"keyId": str(key_id)})
        return CreatedKey(record, key.plaintext)

    async def revoke_api_key(self, owner_id: UUID, key_id: UUID) -> None:
        if not await self._store.revoke_api_key(owner_id, key_id):
            raise NotFound("API key not found")
        self._audit.record("key.revoke", owner_id, detail={"keyId": str(key_id)})

    async def authenticate_owner(self, presented: str | None, client: str | None = None) -> OwnerPrincipal:
        """The owner behind an API key; `client` (the caller's address) is slowed down after failures."""
        self.throttle.check(client, presented)
        if not presented:
            self.throttle.failed(client, presented, "API key")
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'")
        record = await self._store.api_key_by_hash(api_keys.digest(presented))
        if record is None:
            self.throttle.failed(client, presented, "API key")
            raise Unauthenticated("invalid or revoked API key")
        return OwnerPrincipal(record.owner_id, record.id, record.permissions, record.rate_limit)

    # -- agents -----------------------------------------------------------------------------------
    def check_allowed_connectors(self, slugs: Sequence[str]) -> list[str]:
        # Webhook-only providers (twilio, whatsapp) may be allowed too: their events become jobs.
        unknown = [s for s in slugs if not self._catalog.knows(s)]
        if unknown:
            known = {*self._catalog, *self._catalog.receivers}
            hint = did_you_mean(unknown[0], known) if len(unknown) == 1 else ""
            raise Invalid(f"unknown connector slug(s): {', '.join(unknown)}{hint}", field="allowedConnectors")
        return list(dict.fromkeys(slugs))

    async def create_agent(
        self,
        owner_id: UUID,
        *,
        name: str,
        allowed_connectors: Sequence[str],
        tool_rate_limit: int | None = None,
    ) -> CreatedAgent:
        check_name(name, "agent name")
        check_rate_limit(tool_rate_limit, "toolCallRateLimit")
        allowed = self.check_allowed_connectors(allowed_connectors)
        key = api_keys.new_key(api_keys.AGENT_KEY_PREFIX)
        try:
            record = await self._store.create_agent(
                owner_id,
                name=name,
                allowed_connectors=allowed,
                key_hash=key.digest,
                key_prefix=key.display_prefix,
                tool_rate_limit=tool_rate_limit,
            )
        except AlreadyExists as exc:
            raise Conflict(str(exc)) from None
        self._audit.record(
            "agent.create",
            owner_id,
            agent_id=record.id,
            detail={"name": record.name, "allowedConnectors": list(record.allowed_connectors)},
        )
        return CreatedAgent(record, key.plaintext)

    async def list_agents(self, owner_id: UUID) -> list[AgentRecord]:
        return await self._store.list_agents(owner_id)

    async def agent(self, owner_id: UUID, agent_id: UUID) -> AgentRecord:
        record = await self._store.get_agent(owner_id, agent_id)
        if record is None:
            raise NotFound("agent not found")
        return record

    async def update_agent(
        self,
        owner_id: UUID,
        agent_id: UUID,
        *,
        name: str | None = None,
        allowed_connectors: Sequence[str] | None = None,
        tool_rate_limit: LimitChange = KEEP,
    ) -> AgentRecord:
        """Rename an agent, change what it may use, or its tool-call limit (None: the default)."""
        await self.agent(owner_id, agent_id)
        if name is not None:
            check_name(name, "agent name")
        allowed = (
            self.check_allowed_connectors(allowed_connectors) if allowed_connectors is not None else None
        )
        limits = {}
        if tool_rate_limit is not KEEP:
            limits["tool_rate_limit"] = check_rate_limit(tool_rate_limit, "toolCallRateLimit")
        try:
            updated = await self._store.update_agent(
                owner_id, agent_id, name=name, allowed_connectors=allowed, **limits
            )
        except AlreadyExists as exc:
            raise Conflict(str(exc)) from None
        if updated is None:
            raise NotFound("agent not found")
        changed = [
            name for name, value in (("name", name), ("allowedConnectors", allowed)) if value is not None
        ] + (["toolCallRateLimit"] if limits else [])
        self._audit.record("agent.update", owner_id, agent_id=agent_id, detail={"changed": changed})
        return updated

    async def rotate_agent_key(self, owner_id: UUID, agent_id: UUID) -> CreatedAgent:
        """A new MCP key for the same agent (its id, connectors, jobs); the old key stops working."""
        key = api_keys.new_key(api_keys.AGENT_KEY_PREFIX)
        record = await self._store.replace_agent_key(
            owner_id, agent_id, key_hash=key.digest, key_prefix=key.display_prefix
        )
        if record is None:
            raise NotFound("agent not found")
        self._audit.record("agent.rotate_key", owner_id, agent_id=agent_id)
        return CreatedAgent(record, key.plaintext)

    async def delete_agent(self, owner_id: UUID, agent_id: UUID) -> None:
        if not await self._store.delete_agent(owner_id, agent_id):
            raise NotFound("agent not found")
        self._audit.record("agent.delete", owner_id, agent_id=agent_id)

    async def authenticate_agent(self, presented: str, client: str | None = None) -> AgentRecord | None:
        """The agent behind a key, or None; `client` is slowed down after failures (raises Throttled)."""
        self.throttle.check(client, presented)
        agent = await self._store.agent_by_key_hash(api_keys.digest(presented))
        if agent is None:
            self.throttle.failed(client, presented, "agent key")
        return agent

    # -- browser sessions -------------------------------------------------------------------------
    async def sign_in(self, presented: str | None, client: str | None) -> OpenedSession:
        """A browser session for the owner key presented (raises Unauthenticated, Throttled); every
        attempt that reaches the key is audited, a refused one for the owner of the revoked key it
        names when there is one, else for no owner (an operator's concern)."""
        try:
            principal = await self.authenticate_owner(presented, client)
        except Unauthenticated:
            revoked = (
                await self._store.revoked_api_key_by_hash(api_keys.digest(presented)) if presented else None
            )
            self._audit.record(
                "signin.fail",
                revoked.owner_id if revoked else None,
                outcome="unauthenticated",
                actor=Actor.key(revoked.id) if revoked else Actor("key"),
                detail={
                    "reason": "revoked key" if revoked else "unknown key" if presented else "no key",
                    "client": client,
                },
            )
            raise
        opened = await self.open_session(principal)
        self._audit.record(
            "signin.ok", principal.owner_id, actor=Actor.key(principal.key_id), detail={"client": client}
        )
        return opened

    async def open_session(self, principal: OwnerPrincipal) -> OpenedSession:
        """A browser session acting with `principal`'s key: its permissions, and only while it lives."""
        token = secrets.token_urlsafe(32)
        session = await self._flows.create_session(
            principal.owner_id,
            key_id=principal.key_id,
            permissions=principal.permissions,
            token_hash=_digest(token),
            csrf_token=secrets.token_urlsafe(24),
            ttl=SESSION_TTL,
        )
        return OpenedSession(token, session)

    async def session(self, token: str | None) -> WebSession | None:
        if not token or len(token) > _MAX_SESSION_TOKEN:
            return None
        return await self._flows.session_by_token_hash(_digest(token))

    async def close_session(self, token: str) -> None:
        await self._flows.revoke_session(_digest(token))
