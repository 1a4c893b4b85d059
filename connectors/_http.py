"""Outbound HTTP policy for connectors that talk to providers with plain httpx.

One place decides timeouts, the User-Agent and how a provider response becomes an error, so a
connector only says where to send a request and what its body means.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

USER_AGENT = "Tendril/0.1 (+https://github.com/tendril-hub/tendril)"
DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)


def new_http_client(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
    )


def retry_after_seconds(value: str | None, *, default: float = 1.0) -> float:
    """Parse a Retry-After header (delta-seconds or an HTTP date, RFC 9110 section 10.2.3)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
