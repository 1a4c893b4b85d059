"""GitHub: `sha256=` HMAC-SHA256 of the body with the hook secret; X-GitHub-Delivery for dedupe."""

from __future__ import annotations

from collections.abc import Mapping

from connectors._webhook import (
    Event,
    Inbound,
    Refused,
    Reply,
    forged,
    hmac_hex,
    json_object,
    key_part,
    same,
)
from connectors.github.actions import connector


@connector.receiver
class GitHubReceiver:
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event | Reply:
        expected = "sha256=" + hmac_hex(secrets["secret"], inbound.body)
        if not same(inbound.header("x-hub-signature-256"), expected):
            raise forged()
        delivery, name = inbound.header("x-github-delivery"), inbound.header("x-github-event")
        if not delivery or not name:
            raise Refused(400, "X-GitHub-Delivery and X-GitHub-Event are required")
        body = json_object(inbound)
        if name == "ping":
            return Reply(200, b"pong")
        action = body.get("action")
        key = f"github.{key_part(name)}" + (f".{key_part(action)}" if isinstance(action, str) else "")
        return Event(delivery, key, body, payload_is_body=True)
