"""Discord: Ed25519 over `timestamp + body` with the application's public key; 401 when forged.

Handles interactions (PING type 1 -> PONG; others acknowledged as deferred) and webhook events
(PING type 0 -> 204; events -> 204)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from connectors._webhook import Event, Inbound, Refused, Reply, fresh, json_object, key_part, mapping
from connectors.discord.actions import connector

REPLAY_WINDOW = 300  # Discord sets none; five minutes, like the others
PONG = Reply(200, b'{"type":1}', "application/json")
DEFERRED = Reply(200, b'{"type":5}', "application/json")  # "thinking...": the agent follows up


def _unauthorized(reason: str) -> Refused:
    return Refused(401, reason)  # Discord probes with bad signatures and wants exactly 401


@connector.receiver
class DiscordReceiver:
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event | Reply:
        timestamp = inbound.header("x-signature-timestamp")
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(secrets["public_key"]))
            key.verify(
                bytes.fromhex(inbound.header("x-signature-ed25519")), timestamp.encode() + inbound.body
            )
        except (ValueError, InvalidSignature):
            raise _unauthorized("signature does not match") from None
        try:
            fresh(timestamp, inbound.now, REPLAY_WINDOW)
        except Refused as stale:
            raise _unauthorized(stale.reason) from None
        body = json_object(inbound)
        if "event" in body or ("version" in body and "application_id" in body and "token" not in body):
            return self._webhook_event(body)
        if body.get("type") == 1:
            return PONG
        interaction_id = body.get("id")
        if not interaction_id:
            raise Refused(400, "interaction id missing")
        data = mapping(body.get("data"))
        kinds = {2: "application_command", 3: "message_component", 4: "autocomplete", 5: "modal_submit"}
        kind = body.get("type")
        name = kinds.get(kind, f"type_{kind}") if isinstance(kind, int) else f"type_{kind}"
        key = f"discord.{name}" + (f".{key_part(data['name'])}" if data.get("name") else "")
        return Event(str(interaction_id), key, body, reply=DEFERRED, payload_is_body=True)

    @staticmethod
    def _webhook_event(body: dict[str, Any]) -> Event | Reply:
        if body.get("type") == 0:
            return Reply(204)
        event = mapping(body.get("event"))
        data = mapping(event.get("data"))
        # Webhook events carry no id of their own: type, time and the data's ids make one.
        ids = [str(v) for k, v in sorted(data.items()) if k.endswith("id") and isinstance(v, str | int)]
        event_id = ":".join([str(event.get("type")), str(event.get("timestamp")), *ids])
        return Event(
            event_id, f"discord.{key_part(event.get('type'))}", body, reply=Reply(204), payload_is_body=True
        )
