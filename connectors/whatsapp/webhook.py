"""WhatsApp Cloud API (Meta): GET `hub.challenge` verification with the verify token; POSTs signed
`X-Hub-Signature-256: sha256=` HMAC-SHA256 of the body with the app secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import Connector
from connectors._webhook import (
    Event,
    Inbound,
    Refused,
    Reply,
    forged,
    hmac_hex,
    json_object,
    mapping,
    same,
)

connector = Connector.load(__file__)


@connector.receiver
class WhatsAppReceiver:
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event | Reply:
        if inbound.method == "GET":
            if inbound.query.get("hub.mode") == "subscribe" and same(
                inbound.query.get("hub.verify_token", ""), secrets["verify_token"]
            ):
                return Reply(200, inbound.query.get("hub.challenge", "").encode())
            raise forged("verify token does not match")
        expected = "sha256=" + hmac_hex(secrets["app_secret"], inbound.body)
        if not same(inbound.header("x-hub-signature-256"), expected):
            raise forged()
        body = json_object(inbound)
        messages: list[str] = []
        statuses: list[str] = []
        for value in _values(body):
            messages += [str(m.get("id")) for m in value.get("messages", []) if isinstance(m, dict)]
            statuses += [
                f"{s.get('id')}:{s.get('status')}" for s in value.get("statuses", []) if isinstance(s, dict)
            ]
        if messages:
            return Event(",".join(messages), "whatsapp.message", body, payload_is_body=True)
        if statuses:
            status = statuses[0].rsplit(":", 1)[1]
            return Event(",".join(statuses), f"whatsapp.status.{status}", body, payload_is_body=True)
        raise Refused(400, "no messages or statuses in the notification")


def _values(body: dict[str, Any]) -> list[dict[str, Any]]:
    entries = body.get("entry")
    found: list[dict[str, Any]] = []
    for entry in entries if isinstance(entries, list) else []:
        changes = mapping(entry).get("changes")
        for change in changes if isinstance(changes, list) else []:
            value = mapping(change).get("value")
            if isinstance(value, dict):
                found.append(value)
    return found
