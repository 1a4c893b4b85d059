"""Gmail push through Cloud Pub/Sub: a Google-signed OIDC token (RS256) in Authorization, whose
audience, issuer and service-account email must be the configured ones. Never without it."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from google.auth import exceptions as google_exceptions
from google.auth import jwt

from connectors._webhook import Event, Inbound, Refused, forged, json_object, mapping
from connectors.gmail.actions import connector

ISSUERS = ("accounts.google.com", "https://accounts.google.com")


@connector.receiver
class GmailPushReceiver:
    def __init__(self, certs: Mapping[str, str] | None = None) -> None:
        self.certs = dict(certs or {})  # Google's signing certificates, kid -> PEM, fetched by the caller

    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event:
        scheme, _, token = inbound.header("authorization").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise forged("a Pub/Sub OIDC token is required")
        claims = self.verified_claims(token.strip(), secrets, inbound.now)
        body = json_object(inbound)
        message = mapping(body.get("message")) or None
        if message is None:
            raise Refused(400, "message missing")
        message_id = message.get("messageId") or message.get("message_id")
        if not message_id:
            raise Refused(400, "messageId missing")
        try:
            data = json.loads(base64.b64decode(message.get("data", ""), validate=True) or b"{}")
        except ValueError:
            raise Refused(400, "message.data is not base64 JSON") from None
        payload: dict[str, Any] = {**body, "data": data, "pushedBy": claims.get("email")}
        return Event(str(message_id), "gmail.mailbox_changed", payload)

    def verified_claims(self, token: str, secrets: Mapping[str, str], now: float) -> Mapping[str, Any]:
        if not self.certs:
            raise forged("Google signing certificates are not available")
        try:
            claims: Mapping[str, Any] = jwt.decode(token, certs=self.certs, audience=secrets["audience"])
        except (ValueError, google_exceptions.GoogleAuthError) as exc:
            raise forged(f"OIDC token refused: {exc}") from None
        if claims.get("iss") not in ISSUERS:
            raise forged("OIDC token not issued by Google")
        if (
            claims.get("email") != secrets["service_account_email"]
            or claims.get("email_verified") is not True
        ):
            raise forged("OIDC token is not the configured push service account's")
        return claims
