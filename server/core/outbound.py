"""The one outbound delivery mechanism: everything Tendril POSTs to a URL an owner chose, which is
jobs pushed to agents (server/core/push.py) and outgoing webhooks (server/core/outgoing.py).

What both share lives here: the signed envelope (`{event, timestamp, data}`, `X-Webhook-Signature`
the hex HMAC-SHA256 of the raw body, `X-Webhook-Event`, `X-Webhook-Delivery`), the egress guard
(no loopback, private or metadata addresses unless TENDRIL_PUSH_ALLOWED_HOSTS opens a host; no
redirects), the timeout, how an answer is classified (2xx delivered; 408, 429, 5xx and connection
errors worth retrying; other 4xx final), the backoff schedule and the delivery loop (woken at once
when there is something new, every poll interval for retries and expired leases, stopped between
rounds). The durable rows, their leases and what a final failure means stay with each sender.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx

from connectors import AllowList, BlockedDestination, GuardedTransport

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 10.0
# Headers every delivery sets itself; an owner's custom headers may not replace them.
SIGNATURE, EVENT, DELIVERY = "X-Webhook-Signature", "X-Webhook-Event", "X-Webhook-Delivery"
RESERVED_HEADERS = frozenset(
    name.lower() for name in (SIGNATURE, EVENT, DELIVERY, "Content-Type", "Content-Length", "Host")
)
# 4xx answers that mean "not now" rather than "never": retried like 5xx.
RETRYABLE_4XX = frozenset({408, 425, 429})


def sign(secret: str, body: bytes) -> str:
    """What the Integration Layer's `verifySignature` computes: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(event: str, data: Any, at: datetime) -> bytes:
    """The body every delivery carries, as compact UTF-8 JSON: these exact bytes are signed."""
    return json.dumps(
        {"event": event, "timestamp": timestamp(at), "data": data}, separators=(",", ":")
    ).encode()


def signed_headers(
    secret: str, body: bytes, *, event: str, delivery_id: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The owner's own headers first, then ours (which they cannot replace)."""
    headers = {name: value for name, value in (extra or {}).items() if name.lower() not in RESERVED_HEADERS}
    headers.update(
        {
            "Content-Type": "application/json",
            SIGNATURE: sign(secret, body),
            EVENT: event,
            DELIVERY: delivery_id,
        }
    )
    return headers


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended."""

    delivered: bool
    status_code: int | None
    error: str | None  # safe to show the owner: the URL, a status, a refusal; never a header
    blocked: bool = False  # the egress guard refused the address: no attempt will ever get through

    @property
    def final(self) -> bool:
        """Not worth another attempt: blocked, or a 4xx that means "never" (408, 425 and 429 mean
        "not now", and 5xx, timeouts and connection errors are retried)."""
        code = self.status_code
        return self.blocked or (code is not None and 400 <= code < 500 and code not in RETRYABLE_4XX)


def classify(url: str, status_code: int) -> Outcome:
    if 200 <= status_code < 300:
        return Outcome(True, status_code, None)
    return Outcome(False, status_code, f"{url} answered {status_code}")


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait before retry n (1 for the first): `base` doubled per retry, at most `cap`; with
    `jitter`, a uniform draw below that (full jitter), so many senders' retries spread apart."""

    base: float
    cap: float
    jitter: bool = False

    def delay(self, retry: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(retry - 1, 0))
        return random.uniform(0, ceiling) if self.jitter else ceiling


def worker_name(kind: str) -> str:
    """Who holds a lease (shown nowhere but the rows): this host and process."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


class Sender:
    """The guarded HTTP client every delivery goes through: one connection pool per loop."""

    def __init__(
        self,
        allowed_hosts: str | None,
        *,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.allow = AllowList.parse((allowed_hosts or "").split(","))
        self._transport = GuardedTransport(transport or httpx.AsyncHTTPTransport(), allow=self.allow)
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Sender:
        self._client = httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout, follow_redirects=False
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """One attempt; never raises for what the receiver (or the guard) did."""
        assert self._client is not None, "use `async with sender:`"
        try:
            reply = await self._client.post(url, content=body, headers=dict(headers))
        except BlockedDestination as exc:
            return Outcome(False, None, str(exc), blocked=True)
        except httpx.TimeoutException:
            return Outcome(False, None, f"{url} did not answer within {self._timeout:g}s")
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"could not reach {url}: {exc!r}")
        return classify(url, reply.status_code)


class DeliveryLoop:
    """Runs `round` (which answers how many deliveries it handled) until it handles none, then
    waits to be woken or for the poll interval; `stop` lets the round in progress finish (cancelling
    a database call midway can wedge aiosqlite's worker thread at shutdown)."""

    def __init__(self, name: str, round: Callable[[], Awaitable[int]], *, poll_seconds: float) -> None:
        self._name = name
        self._round = round
        self._poll = poll_seconds
        self._wake = anyio.Event()
        self.stopping = False

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self.stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self.stopping:
            try:
                while not self.stopping and await self._round():
                    pass
            except Exception:  # keep delivering; what was leased comes back when its lease runs out
                logger.exception("%s round failed", self._name)
            with anyio.move_on_after(self._poll):
                await self._wake.wait()
            if not self.stopping:
                self._wake = anyio.Event()
