"""Failures an action can report, one class per kind (Authlib/Airbyte style, not a switch).

Each carries a `message` that is safe to show the agent and the user, and may carry an internal
`detail` for logs. The server maps them to answers in one place per edge (server/web/errors.py,
server/mcp/errors.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import ClassVar

from pydantic import ValidationError


class ConnectorError(Exception):
    code: ClassVar[str] = "connector_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def facts(self) -> dict[str, object]:
        """Machine-readable fields for structured error results."""
        return {"code": self.code, "message": self.message}


class InvalidInput(ConnectorError):
    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.field = field

    def facts(self) -> dict[str, object]:
        return {**super().facts(), "field": self.field}

    @classmethod
    def from_validation(cls, exc: ValidationError) -> InvalidInput:
        """The first problem pydantic found, naming the field (dotted for nested ones)."""
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        where = f" at '{field}'" if field else ""
        return cls(f"invalid input{where}: {first['msg']}", field=field)


class InvalidCredentials(ConnectorError):
    """The provider refused the stored credential: the user must connect again."""

    code = "invalid_credentials"


class NotConnected(ConnectorError):
    """No usable connection: the user must visit `connect_url` first."""

    code = "not_connected"

    def __init__(self, message: str, *, connect_url: str, connection_id: str) -> None:
        super().__init__(message)
        self.connect_url = connect_url
        self.connection_id = connection_id

    def facts(self) -> dict[str, object]:
        return {**super().facts(), "connectUrl": self.connect_url, "connectionId": self.connection_id}


class MissingScopes(ConnectorError):
    code = "missing_scopes"

    def __init__(self, scopes: Sequence[str], *, provider: str, hint: str = "") -> None:
        """`scopes` may be empty when the provider does not say; the runtime then names the
        scopes the action declares."""
        named = ", ".join(scopes) or "an unnamed scope"
        super().__init__(f"{provider} refused: the connection lacks the scope(s) {named}{hint}")
        self.scopes = list(scopes)
        self.provider = provider
        self.hint = hint

    def naming(self, scopes: Sequence[str]) -> MissingScopes:
        return MissingScopes(scopes, provider=self.provider, hint=self.hint)

    def facts(self) -> dict[str, object]:
        return {**super().facts(), "scopes": self.scopes}


class Forbidden(ConnectorError):
    code = "forbidden"


class NotFound(ConnectorError):
    code = "not_found"


class RateLimited(ConnectorError):
    code = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(0.0, retry_after)

    def facts(self) -> dict[str, object]:
        return {**super().facts(), "retryAfter": round(self.retry_after, 3)}


class UpstreamError(ConnectorError):
    code = "upstream_error"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = retryable

    @property
    def is_transient(self) -> bool:
        return self.transient


class UpstreamTimeout(ConnectorError):
    code = "upstream_timeout"
    retryable = True


def tls_failure(exc: BaseException, peer: str) -> UpstreamError | None:
    """A failed TLS handshake anywhere in `exc`'s chain, as the error to report about `peer`.

    Clients wrap the ssl error (httpx in a ConnectError through httpcore, aiosmtplib in
    SMTPConnectError for implicit TLS) or let it out raw (aiosmtplib's STARTTLS)."""
    current: BaseException | None = exc
    while current is not None and not isinstance(current, ssl.SSLError):
        current = current.__cause__ or current.__context__
    if isinstance(current, ssl.SSLCertVerificationError):
        return UpstreamError(f"TLS certificate verification failed for {peer}: {current.verify_message}")
    if current is not None:
        return UpstreamError(f"TLS with {peer} failed: {current.reason or 'handshake failed'}")
    return None
