"""Inbound provider webhooks: each provider's own verification scheme, as pure functions.

A receiver gets the raw request (`Inbound`) and the endpoint's secrets and returns either an
`Event` to record (with the provider's event id for dedupe and a normalised event key such as
`github.issues.opened`), or a `Reply` for a handshake that stores nothing (Slack's
url_verification, Discord's PING, GitHub's ping). Anything that fails verification raises
`Refused`; nothing unauthenticated ever becomes an event. Verification happens on the raw bytes,
in constant time, before any parsing.
"""

from connectors.webhooks._base import (
    Event,
    Inbound,
    Receiver,
    Refused,
    Reply,
)
from connectors.webhooks._registry import RECEIVERS, receiver_for

__all__ = ["RECEIVERS", "Event", "Inbound", "Receiver", "Refused", "Reply", "receiver_for"]
