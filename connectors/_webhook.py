"""Inbound provider webhooks: the shapes every receiver shares, and the checks they have in common.

A receiver (a connector's `webhook.py`) gets the raw request (`Inbound`) and the endpoint's secrets
and returns either an `Event` to record (with the provider's event id for dedupe and a normalised
event key such as `github.issues.opened`), or a `Reply` for a handshake that stores nothing (Slack's
url_verification, Discord's PING, GitHub's ping). Anything that fails verification raises
`Refused`; nothing unauthenticated ever becomes an event. Verification happens on the raw bytes,
in constant time, before any parsing.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl


@dataclass(frozen=True)
class Inbound:
    method: str
    url: str  # as the provider requested it (Twilio signs it)
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    now: float  # Unix seconds
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class Event:
    event_id: str
    event_key: str
    payload: Any
    reply: Reply | None = None  # what to answer instead of the default 200
    # The payload is the request's JSON body, unchanged: stored as the text that came (no re-encoding).
    payload_is_body: bool = False


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


class Refused(Exception):
    """Not verified, or not acceptable; `status` is what the provider should see."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Receiver(Protocol):
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event | Reply: ...


def forged(reason: str = "signature does not match") -> Refused:
    return Refused(403, reason)


def hmac_hex(key: str | bytes, message: bytes, digest: str = "sha256") -> str:
    secret = key.encode() if isinstance(key, str) else key
    return hmac.digest(secret, message, digest).hex()  # one C call (hmac.new is a Python class)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def json_body(inbound: Inbound) -> Any:
    try:
        # JSON between systems is UTF-8 (RFC 8259); decoding first spares json its encoding sniffing.
        return json.loads(inbound.body.decode())
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "body is not valid JSON") from None
    except RecursionError:  # signed, but nested deeper than any provider's payload
        raise Refused(400, "body is nested too deeply") from None


def json_object(inbound: Inbound) -> dict[str, Any]:
    body = json_body(inbound)
    if not isinstance(body, dict):
        raise Refused(400, "body must be a JSON object")
    return body


def form_body(inbound: Inbound) -> dict[str, list[str]]:
    try:
        pairs = parse_qsl(
            inbound.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(inbound.body)
        )
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "body is not valid form data") from None
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def fresh(timestamp: str, now: float, window: float, *, future_too: bool = True) -> None:
    """Refuse a signed timestamp outside the replay window."""
    try:
        moment = float(timestamp)
    except ValueError:
        raise forged("timestamp missing or not a number") from None
    if now - moment > window or (future_too and moment - now > window):
        raise forged(f"timestamp outside the {window:g}s replay window")


def mapping(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (payload fields are untrusted)."""
    return value if isinstance(value, dict) else {}


def key_part(value: Any) -> str:
    """A normalised event-key segment: lower case, dots for separators."""
    return str(value).strip().lower().replace(" ", "_").replace("/", ".")
