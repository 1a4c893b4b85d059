"""Every URL Tendril hands out, built from the public base URL, and the paths they point at.

The web edge mounts its routes at these paths, so a link and its route cannot drift apart.
"""

from __future__ import annotations

from urllib.parse import urlencode
from uuid import UUID

CONNECT_PAGE_PATH = "/connect/{id}"
OAUTH_START_PATH = "/api/v1/connections/oauth/start"
OAUTH_CALLBACK_PATH = "/api/v1/connections/oauth/callback"
RECEIVER_PREFIX = "/api/v1/connectors/webhooks/"
MCP_PATH = "/mcp"


class Links:
    def __init__(self, public_url: str, webhook_base_url: str | None = None) -> None:
        self.public_url = public_url.rstrip("/")
        self.webhook_base_url = (webhook_base_url or public_url).rstrip("/")

    def url(self, path: str) -> str:
        return f"{self.public_url}{path}"

    def connect_page(self, connection_id: UUID) -> str:
        """Where a person completes a connection (signs in, then OAuth or the credential form)."""
        return self.url(CONNECT_PAGE_PATH.format(id=connection_id))

    def credential_submit(self, connection_id: UUID) -> str:
        return self.url(f"/api/v1/connections/{connection_id}/credentials")

    def oauth_start(self, connector_slug: str, connection_id: UUID, *, select_account: bool = False) -> str:
        """Where a person begins an OAuth handshake (sign-in required there; nothing secret in it)."""
        query = {"connector": connector_slug, "connection": str(connection_id)}
        if select_account:
            query["selectAccount"] = "1"
        return f"{self.url(OAUTH_START_PATH)}?{urlencode(query)}"

    @property
    def oauth_callback(self) -> str:
        """The redirect URI registered at every provider."""
        return self.url(OAUTH_CALLBACK_PATH)

    def receiver(self, provider: str, endpoint_id: UUID) -> str:
        """A webhook endpoint's URL, on the public base providers can reach."""
        return f"{self.webhook_base_url}{RECEIVER_PREFIX}{provider}/{endpoint_id}"

    @property
    def mcp(self) -> str:
        return self.url(MCP_PATH)
