"""Which receiver handles which provider."""

from __future__ import annotations

from connectors.webhooks._base import Receiver, Refused
from connectors.webhooks.discord import DiscordReceiver
from connectors.webhooks.github import GitHubReceiver
from connectors.webhooks.gmail import GmailPushReceiver
from connectors.webhooks.linear import LinearReceiver
from connectors.webhooks.slack import SlackReceiver
from connectors.webhooks.stripe import StripeReceiver
from connectors.webhooks.telegram import TelegramReceiver
from connectors.webhooks.twilio import TwilioReceiver
from connectors.webhooks.whatsapp import WhatsAppReceiver

RECEIVERS: dict[str, type[Receiver]] = {
    r.provider: r
    for r in (
        TelegramReceiver,
        SlackReceiver,
        DiscordReceiver,
        WhatsAppReceiver,
        TwilioReceiver,
        GmailPushReceiver,
        GitHubReceiver,
        LinearReceiver,
        StripeReceiver,
    )
}


def receiver_for(provider: str) -> type[Receiver]:
    found = RECEIVERS.get(provider)
    if found is None:
        raise Refused(404, f"unknown webhook provider: {provider}")
    return found
