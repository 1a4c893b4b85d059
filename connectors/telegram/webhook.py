"""Telegram: the secret_token given to setWebhook comes back in X-Telegram-Bot-Api-Secret-Token."""

from __future__ import annotations

from collections.abc import Mapping

from connectors._webhook import Event, Inbound, Refused, forged, json_object, same
from connectors.telegram.actions import connector


@connector.receiver
class TelegramReceiver:
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event:
        if not same(inbound.header("x-telegram-bot-api-secret-token"), secrets["secret_token"]):
            raise forged("secret token does not match")
        update = json_object(inbound)
        update_id = update.get("update_id")
        if not isinstance(update_id, int):
            raise Refused(400, "update_id missing")
        kind = next((key for key in update if key != "update_id"), "unknown")
        return Event(str(update_id), f"telegram.{kind}", update, payload_is_body=True)
