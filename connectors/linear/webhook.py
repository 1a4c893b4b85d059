"""Linear: `Linear-Signature` HMAC-SHA256 hex of the body; `webhookTimestamp` within 60 s."""

from __future__ import annotations

from collections.abc import Mapping

from connectors._webhook import Event, Inbound, Refused, forged, hmac_hex, json_object, key_part, same
from connectors.linear.actions import connector

REPLAY_WINDOW_MS = 60_000  # what Linear's SDK allows


@connector.receiver
class LinearReceiver:
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event:
        if not same(inbound.header("linear-signature"), hmac_hex(secrets["signing_secret"], inbound.body)):
            raise forged()
        body = json_object(inbound)
        stamp = body.get("webhookTimestamp")
        if not isinstance(stamp, int | float) or abs(inbound.now * 1000 - stamp) > REPLAY_WINDOW_MS:
            raise forged("webhookTimestamp outside the 60s replay window")
        delivery = inbound.header("linear-delivery")
        kind, action = body.get("type"), body.get("action")
        if not delivery or not isinstance(kind, str):
            raise Refused(400, "Linear-Delivery header and type are required")
        key = f"linear.{key_part(kind)}" + (f".{key_part(action)}" if isinstance(action, str) else "")
        return Event(delivery, key, body, payload_is_body=True)
