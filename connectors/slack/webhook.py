"""Slack: `v0=` HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret, 5-minute window."""

from __future__ import annotations

import json
from collections.abc import Mapping

from connectors._webhook import (
    Event,
    Inbound,
    Refused,
    Reply,
    forged,
    form_body,
    fresh,
    hmac_hex,
    json_object,
    key_part,
    mapping,
    same,
)
from connectors.slack.actions import connector

REPLAY_WINDOW = 300


@connector.receiver
class SlackReceiver:
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event | Reply:
        timestamp = inbound.header("x-slack-request-timestamp")
        fresh(timestamp, inbound.now, REPLAY_WINDOW)
        expected = "v0=" + hmac_hex(secrets["signing_secret"], f"v0:{timestamp}:".encode() + inbound.body)
        if not same(inbound.header("x-slack-signature"), expected):
            raise forged()
        if inbound.header("content-type").startswith("application/x-www-form-urlencoded"):
            return self._form(inbound)
        body = json_object(inbound)
        if body.get("type") == "url_verification":
            return Reply(200, str(body.get("challenge", "")).encode())
        event = mapping(body.get("event"))
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise Refused(400, "event_id missing")
        return Event(
            event_id, f"slack.{key_part(event.get('type') or body.get('type'))}", body, payload_is_body=True
        )

    @staticmethod
    def _form(inbound: Inbound) -> Event:
        """Slash commands (`command=/x`) and interactivity (`payload=<json>`)."""
        form = {key: values[-1] for key, values in form_body(inbound).items()}
        if "payload" in form:
            try:
                payload = json.loads(form["payload"])
            except ValueError:
                raise Refused(400, "payload is not valid JSON") from None
            if not isinstance(payload, dict):
                raise Refused(400, "payload must be a JSON object")
            trigger = payload.get("trigger_id") or payload.get("action_ts")
            if not trigger:
                raise Refused(400, "trigger_id missing")
            return Event(str(trigger), f"slack.interaction.{key_part(payload.get('type'))}", payload)
        if "command" in form and form.get("trigger_id"):
            return Event(form["trigger_id"], "slack.slash_command", form)
        raise Refused(400, "neither an event, a command nor an interaction")
