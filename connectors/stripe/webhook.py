"""Stripe: `Stripe-Signature: t=..,v1=..`, HMAC-SHA256 of `{t}.{body}` with `whsec_`; any v1 may match."""

from __future__ import annotations

from collections.abc import Mapping

from connectors._webhook import Event, Inbound, Refused, forged, hmac_hex, json_object, key_part, same
from connectors.stripe.actions import connector

TOLERANCE = 300  # the Stripe SDK's default


@connector.receiver
class StripeReceiver:
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event:
        parts = [item.split("=", 1) for item in inbound.header("stripe-signature").split(",") if "=" in item]
        timestamps = [value for name, value in parts if name.strip() == "t"]
        candidates = [value for name, value in parts if name.strip() == "v1"]
        if len(timestamps) != 1 or not candidates:
            raise forged("Stripe-Signature needs one t= and at least one v1=")
        expected = hmac_hex(secrets["signing_secret"], timestamps[0].encode() + b"." + inbound.body)
        if not any(same(candidate, expected) for candidate in candidates):
            raise forged()
        try:
            age = inbound.now - int(timestamps[0])
        except ValueError:
            raise forged("timestamp is not a number") from None
        if age > TOLERANCE:
            raise forged(f"timestamp older than {TOLERANCE}s")
        event = json_object(inbound)
        event_id, kind = event.get("id"), event.get("type")
        if not isinstance(event_id, str) or not isinstance(kind, str):
            raise Refused(400, "event id and type are required")
        return Event(event_id, f"stripe.{key_part(kind)}", event, payload_is_body=True)
