"""OAuth connections: the authorization-code handshake (start, complete, fail) that ends in an
active connection.

The browser side (who is signed in) is the edge's concern; this module gets the signed-in owner's
id and trusts nothing else from the request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from auth.credentials import CredentialVault
from auth.oauth import OAuthFailure as ProviderRefused
from auth.oauth import new_code_verifier, new_state
from auth.tokens import register_token_secrets
from connectors import Catalog, Connector
from server.core.audit import Actor, Audit
from server.core.connections import Connections
from server.core.errors import Invalid
from server.core.links import Links
from server.core.oauth_clients import OAuthClients
from storage.flows import FlowStore
from storage.repositories import ConnectionRecord

logger = logging.getLogger(__name__)

STATE_TTL = timedelta(minutes=10)

Problem = Literal[
    "access_denied",
    "unknown_state",
    "expired_state",
    "used_state",
    "foreign_state",
    "exchange_failed",
    "gone",
]


class OAuthProblem(Exception):
    """The handshake cannot complete; `problem` picks what the user is told."""

    problem: Problem

    def __init__(
        self, problem: Problem, detail: str = "", *, connection: ConnectionRecord | None = None
    ) -> None:
        super().__init__(f"{problem}: {detail}" if detail else problem)
        self.problem = problem
        self.detail = detail
        self.connection = connection  # the signed-in owner's connection, once it is known


@dataclass(frozen=True, slots=True)
class Completed:
    connection: ConnectionRecord
    connector: Connector


def state_digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


class OAuthFlow:
    def __init__(
        self,
        *,
        catalog: Catalog,
        clients: OAuthClients,
        connections: Connections,
        flows: FlowStore,
        vault: CredentialVault,
        links: Links,
        audit: Audit,
    ) -> None:
        self._audit = audit
        self._catalog = catalog
        self._clients = clients
        self._connections = connections
        self._flows = flows
        self._vault = vault
        self._links = links

    def start_url(self, connection: ConnectionRecord, *, select_account: bool = False) -> str:
        return self._links.oauth_start(
            connection.connector_slug, connection.id, select_account=select_account
        )

    async def restart(self, owner_id: UUID, connection_id: UUID) -> ConnectionRecord:
        """A fresh handshake: earlier states stop working, the connection waits for the new one."""
        record = await self._connections.get(owner_id, connection_id)
        if record.auth_method != "oauth":
            raise Invalid("this connection does not use OAuth; submit its credentials instead")
        if self._clients.provider(self._catalog[record.connector_slug]) is None:
            raise Invalid(f"connector {record.connector_slug} has no OAuth client configured")
        await self._flows.expire_states(record.id)
        return record

    async def begin(
        self, owner_id: UUID, connector: Connector, connection_id: UUID | None, *, select_account: bool
    ) -> str:
        """The provider's authorization URL for the owner's connection (a new pending one when none
        is named), with a fresh single-use `state` bound to this owner and connection."""
        if connection_id is not None:
            record = await self._connections.get(owner_id, connection_id)
            if record.connector_slug != connector.slug:
                raise Invalid("that connection belongs to another connector")
        else:
            # Checked before a connection is made: a refused start leaves nothing behind.
            if self._clients.provider(connector) is None:
                raise Invalid(f"{connector.spec.name} has no OAuth client configured")
            record, _ = await self._connections.start(owner_id, connector)
        client = self._clients.client(connector)
        if client is None:
            raise Invalid(f"{connector.spec.name} has no OAuth client configured")
        state = new_state()
        verifier = new_code_verifier() if client.provider.pkce else None
        await self._flows.create_state(
            state_hash=state_digest(state),
            owner_id=record.owner_id,
            connection_id=record.id,
            sealed_verifier=self._vault.seal(record.id, {"code_verifier": verifier}) if verifier else None,
            redirect_uri=self._links.oauth_callback,
            ttl=STATE_TTL,
        )
        return client.authorization_url(state=state, code_verifier=verifier, select_account=select_account)

    async def complete(self, *, signed_in_owner: UUID, state: str, code: str) -> Completed:
        """Redeem the code for tokens; nothing is stored unless every check passes. Audited for the
        signed-in owner as oauth.complete, or oauth.fail with the problem as its outcome."""
        started = time.perf_counter()
        try:
            completed = await self._complete(signed_in_owner, state, code)
        except OAuthProblem as problem:
            connection = problem.connection
            self._audit.record(
                "oauth.fail",
                signed_in_owner,
                outcome=problem.problem,
                connection_id=connection.id if connection else None,
                connector=connection.connector_slug if connection else None,
                latency_ms=(time.perf_counter() - started) * 1000,
                detail={"reason": problem.detail[:200]} if problem.detail else None,
            )
            raise
        self._audit.record(
            "oauth.complete",
            signed_in_owner,
            connection_id=completed.connection.id,
            connector=completed.connector.slug,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        return completed

    async def _complete(self, signed_in_owner: UUID, state: str, code: str) -> Completed:
        claimed = await self._flows.consume_state(state_digest(state))
        if claimed == "unknown":
            raise OAuthProblem("unknown_state")
        if claimed == "used":
            raise OAuthProblem("used_state")
        if claimed == "expired":
            raise OAuthProblem("expired_state")
        if claimed.owner_id != signed_in_owner:
            raise OAuthProblem("foreign_state")
        connection = await self._connections.find(claimed.owner_id, claimed.connection_id)
        if connection is None:
            raise OAuthProblem("gone", "the connection was deleted meanwhile")
        connector = self._catalog[connection.connector_slug]
        client = self._clients.client(connector)
        if client is None:
            raise OAuthProblem(
                "gone", f"{connector.spec.name} has no OAuth client configured", connection=connection
            )
        verifier = None
        if claimed.sealed_verifier:
            verifier = self._vault.open(connection.id, claimed.sealed_verifier)["code_verifier"]
        try:
            tokens = await client.exchange(code=code, code_verifier=verifier)
        except ProviderRefused as failure:
            logger.warning("OAuth code exchange for connection %s failed: %s", connection.id, failure.error)
            raise OAuthProblem("exchange_failed", failure.error, connection=connection) from None
        register_token_secrets(tokens.fields)
        fields = dict(tokens.fields)
        keys = dict(connector.spec.oauth.credential_keys) if connector.spec.oauth else {}
        for source, key in keys.items():
            if source in fields:
                fields[key] = fields[source]
        fields["_credential_keys"] = ",".join(f"{s}={k}" for s, k in keys.items())
        activated = await self._connections.activate(
            connection,
            sealed_credentials=self._vault.seal(connection.id, fields),
            account=tokens.account,
            auth_method="oauth",
            scopes=tokens.scopes,
            token_expires_at=datetime.fromtimestamp(tokens.expires_at, UTC) if tokens.expires_at else None,
        )
        if activated is None:
            raise OAuthProblem("gone", "the connection was deleted meanwhile", connection=connection)
        return Completed(activated, connector)

    async def fail(self, *, state: str, problem: Problem, signed_in_owner: UUID | None = None) -> None:
        """A provider error (access_denied): burn the state and note it on the connection."""
        claimed = await self._flows.consume_state(state_digest(state))
        if isinstance(claimed, str):
            return
        # Audited for the connection's owner; a browser signed in as someone else stays unnamed.
        stranger = signed_in_owner is not None and signed_in_owner != claimed.owner_id
        self._audit.record(
            "oauth.fail",
            claimed.owner_id,
            outcome=problem,
            connection_id=claimed.connection_id,
            actor=Actor("session") if stranger else None,
        )
        await self._connections.handshake_ended(
            claimed.owner_id, claimed.connection_id, f"authorization ended: {problem}"
        )
