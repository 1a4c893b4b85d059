"""OAuth connections: provider settings, starting the handshake, completing it, revoking.

The browser side (who is signed in) is the routes' concern; this module gets the signed-in
owner's id and trusts nothing else from the request.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlencode
from uuid import UUID

from auth.credentials import CredentialVault
from auth.oauth import OAuthClient, OAuthFailure, OAuthProvider, new_code_verifier, new_state
from auth.redaction import secrets_to_redact
from auth.tokens import register_token_secrets
from connectors import Catalog, Connector
from server.settings import Settings
from server.waiters import ConnectionWaiters
from storage.flows import FlowStore
from storage.repositories import ConnectionRecord, ConnectionStatus, Store

logger = logging.getLogger(__name__)

STATE_TTL = timedelta(minutes=10)
CALLBACK_PATH = "/api/v1/connections/oauth/callback"
START_PATH = "/api/v1/connections/oauth/start"

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
    """The handshake cannot complete; `problem` picks the page the user sees."""

    def __init__(self, problem: Problem, detail: str = "") -> None:
        super().__init__(f"{problem}: {detail}" if detail else problem)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Completed:
    connection: ConnectionRecord
    connector: Connector


def state_digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


class OAuthConnections:
    def __init__(
        self,
        *,
        settings: Settings,
        catalog: Catalog,
        store: Store,
        flows: FlowStore,
        vault: CredentialVault,
        waiters: ConnectionWaiters,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._store = store
        self._flows = flows
        self._vault = vault
        self._waiters = waiters

    @property
    def redirect_uri(self) -> str:
        return f"{self._settings.public_url}{CALLBACK_PATH}"

    def provider(self, connector: Connector) -> OAuthProvider | None:
        """The provider description, when the connector has an OAuth side and a client is configured."""
        spec = connector.spec.oauth
        overrides = self._settings.connector(connector.slug)
        if spec is None or not overrides.client_id or overrides.client_secret is None:
            return None
        secrets_to_redact.register(overrides.client_secret.get_secret_value())
        return OAuthProvider(
            name=connector.spec.name,
            client_id=overrides.client_id,
            client_secret=overrides.client_secret.get_secret_value(),
            authorize_url=overrides.authorize_url or spec.authorize_url,
            token_url=overrides.token_url or spec.token_url,
            revoke_url=overrides.revoke_url or spec.revoke_url,
            scopes=spec.scopes,
            scope_separator=spec.scope_separator,
            client_auth=spec.client_auth,
            pkce=spec.pkce,
            authorize_params=dict(spec.authorize_params),
            account_picker_params=dict(spec.account_picker_params),
            token_body=spec.token_body,
        )

    def client(self, connector: Connector) -> OAuthClient | None:
        provider = self.provider(connector)
        return OAuthClient(provider, self.redirect_uri) if provider else None

    def start_url(self, connection: ConnectionRecord, *, select_account: bool = False) -> str:
        """Where a person begins the handshake (sign-in required there; nothing secret in it)."""
        query = {"connector": connection.connector_slug, "connection": str(connection.id)}
        if select_account:
            query["selectAccount"] = "1"
        return f"{self._settings.public_url}{START_PATH}?{urlencode(query)}"

    async def authorization_url(self, connection: ConnectionRecord, *, select_account: bool) -> str:
        """A fresh, single-use `state` bound to this owner and connection; the provider's URL."""
        connector = self._catalog[connection.connector_slug]
        client = self.client(connector)
        if client is None:
            raise OAuthProblem("gone", f"{connector.spec.name} has no OAuth client configured")
        state = new_state()
        verifier = new_code_verifier() if client.provider.pkce else None
        await self._flows.create_state(
            state_hash=state_digest(state),
            owner_id=connection.owner_id,
            connection_id=connection.id,
            sealed_verifier=self._vault.seal(connection.id, {"code_verifier": verifier})
            if verifier
            else None,
            redirect_uri=self.redirect_uri,
            ttl=STATE_TTL,
        )
        return client.authorization_url(state=state, code_verifier=verifier, select_account=select_account)

    async def complete(self, *, signed_in_owner: UUID, state: str, code: str) -> Completed:
        """Redeem the code for tokens; nothing is stored unless every check passes."""
        claimed = await self._flows.consume_state(state_digest(state))
        if claimed == "unknown":
            raise OAuthProblem("unknown_state")
        if claimed == "used":
            raise OAuthProblem("used_state")
        if claimed == "expired":
            raise OAuthProblem("expired_state")
        if claimed.owner_id != signed_in_owner:
            raise OAuthProblem("foreign_state")
        connection = await self._store.get_connection(claimed.owner_id, claimed.connection_id)
        if connection is None:
            raise OAuthProblem("gone", "the connection was deleted meanwhile")
        connector = self._catalog[connection.connector_slug]
        client = self.client(connector)
        if client is None:
            raise OAuthProblem("gone", f"{connector.spec.name} has no OAuth client configured")
        verifier = None
        if claimed.sealed_verifier:
            verifier = self._vault.open(connection.id, claimed.sealed_verifier)["code_verifier"]
        try:
            tokens = await client.exchange(code=code, code_verifier=verifier)
        except OAuthFailure as failure:
            logger.warning("OAuth code exchange for connection %s failed: %s", connection.id, failure.error)
            raise OAuthProblem("exchange_failed", failure.error) from None
        register_token_secrets(tokens.fields)
        fields = dict(tokens.fields)
        keys = dict(connector.spec.oauth.credential_keys) if connector.spec.oauth else {}
        for source, key in keys.items():
            if source in fields:
                fields[key] = fields[source]
        fields["_credential_keys"] = ",".join(f"{s}={k}" for s, k in keys.items())
        activated = await self._store.activate_connection(
            connection.owner_id,
            connection.id,
            sealed_credentials=self._vault.seal(connection.id, fields),
            account=tokens.account,
            auth_method="oauth",
            scopes=tokens.scopes,
            token_expires_at=datetime.fromtimestamp(tokens.expires_at, UTC) if tokens.expires_at else None,
        )
        if activated is None:
            raise OAuthProblem("gone", "the connection was deleted meanwhile")
        await self._waiters.connected(activated.id)
        return Completed(activated, connector)

    async def fail(self, *, state: str, problem: Problem) -> None:
        """A provider error (access_denied): burn the state and note it on the connection."""
        claimed = await self._flows.consume_state(state_digest(state))
        if isinstance(claimed, str):
            return
        await self._store.set_connection_status(
            claimed.owner_id,
            claimed.connection_id,
            ConnectionStatus.PENDING,
            last_error=f"authorization ended: {problem}",
        )

    async def revoke_at_provider(self, connection: ConnectionRecord) -> bool:
        """Best-effort RFC 7009 revocation before a connection is deleted."""
        if connection.auth_method != "oauth" or connection.sealed_credentials is None:
            return False
        client = self.client(self._catalog[connection.connector_slug])
        if client is None:
            return False
        credentials = self._vault.open(connection.id, connection.sealed_credentials)
        token = credentials.get("refresh_token") or credentials.get("access_token")
        hint = "refresh_token" if "refresh_token" in credentials else "access_token"
        return await client.revoke(token, hint=hint) if token else False
