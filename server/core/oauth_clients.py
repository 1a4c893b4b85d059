"""Each connector's OAuth client, when its spec has an OAuth side and the operator set one up
(TENDRIL_<SLUG>_CLIENT_ID and _CLIENT_SECRET, with optional endpoint overrides)."""

from __future__ import annotations

from auth.oauth import OAuthClient, OAuthProvider
from auth.redaction import secrets_to_redact
from connectors import Connector
from server.core.links import Links
from server.settings import Settings


class OAuthClients:
    """Each connector's OAuth client, when its spec has an OAuth side and the operator set one up."""

    def __init__(self, settings: Settings, links: Links) -> None:
        self._settings = settings
        self._links = links

    def provider(self, connector: Connector) -> OAuthProvider | None:
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
        return OAuthClient(provider, self._links.oauth_callback) if provider else None
