"""Signed provider deliveries for tests and benchmarks, made the providers' way.

Each signer knows a provider's secrets and builds deliveries signed with the provider's own
helper where one exists (slack_sdk, stripe, google-auth) or by its documented scheme, plus the
bad variants every receiver must refuse: a wrong secret, a stale timestamp, a malformed body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import stripe
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from google.auth import crypt, jwt
from slack_sdk.signature import SignatureVerifier

from connectors.twilio.webhook import signature as twilio_signature


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]
    query: str = ""


@dataclass
class Signer:
    provider: str
    secrets: dict[str, str]
    timestamped: bool = True  # the scheme signs a time, so a stale delivery is refusable
    url: str = ""  # the receiver URL, for schemes that sign it (Twilio); set by the test

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        raise NotImplementedError

    def malformed(self) -> Delivery:
        """A correctly signed body that is not the JSON/form the provider sends."""
        raise NotImplementedError

    def sign_body(self, body: bytes) -> Delivery:
        """Any body, correctly signed (for providers that sign the raw JSON body)."""
        raise NotImplementedError


def _hmac_hex(secret: str, message: bytes, digest: Any = hashlib.sha256) -> str:
    return hmac.new(secret.encode(), message, digest).hexdigest()


@dataclass
class SlackSigner(Signer):
    provider: str = "slack"
    secrets: dict[str, str] = field(default_factory=lambda: {"signing_secret": "slack-signing-Canary-4f9a"})

    def _signed(self, body: bytes, age: float, forged: bool) -> Delivery:
        stamp = str(int(time.time() - age))
        secret = "wrong" if forged else self.secrets["signing_secret"]
        sig = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body.decode())
        headers = {
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sig,
            "Content-Type": "application/json",
        }
        return Delivery(body, headers)

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        body = {
            "type": "event_callback",
            "event_id": event_id,
            "event": {"type": "app_mention", "text": "hi"},
        }
        return self._signed(json.dumps(body).encode(), age, forged)

    def malformed(self) -> Delivery:
        return self._signed(b'{"type": "event_callback", ', 0, False)

    def sign_body(self, body: bytes) -> Delivery:
        return self._signed(body, 0, False)


DISCORD_KEY = ed25519.Ed25519PrivateKey.generate()


@dataclass
class DiscordSigner(Signer):
    provider: str = "discord"
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            "public_key": DISCORD_KEY.public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            .hex()
        }
    )

    def _signed(self, body: bytes, age: float, forged: bool) -> Delivery:
        stamp = str(int(time.time() - age))
        key = ed25519.Ed25519PrivateKey.generate() if forged else DISCORD_KEY
        signature = key.sign(stamp.encode() + body).hex()
        return Delivery(body, {"X-Signature-Timestamp": stamp, "X-Signature-Ed25519": signature})

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        body = {"id": event_id, "type": 2, "token": "interaction-token", "data": {"name": "deploy"}}
        return self._signed(json.dumps(body).encode(), age, forged)

    def malformed(self) -> Delivery:
        return self._signed(b"not json", 0, False)

    def sign_body(self, body: bytes) -> Delivery:
        return self._signed(body, 0, False)


@dataclass
class GitHubSigner(Signer):
    provider: str = "github"
    secrets: dict[str, str] = field(default_factory=lambda: {"secret": "github-hook-Canary-77e1"})
    timestamped: bool = False

    def _signed(self, body: bytes, event_id: str, forged: bool) -> Delivery:
        secret = "wrong" if forged else self.secrets["secret"]
        headers = {
            "X-Hub-Signature-256": "sha256=" + _hmac_hex(secret, body),
            "X-GitHub-Delivery": event_id,
            "X-GitHub-Event": "issues",
            "Content-Type": "application/json",
        }
        return Delivery(body, headers)

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        body = json.dumps({"action": "opened", "issue": {"number": 7, "title": "Crash"}}).encode()
        return self._signed(body, event_id, forged)

    def malformed(self) -> Delivery:
        return self._signed(b"[1, 2", "bad-1", False)

    def sign_body(self, body: bytes) -> Delivery:
        return self._signed(body, "nested-1", False)


@dataclass
class StripeSigner(Signer):
    provider: str = "stripe"
    secrets: dict[str, str] = field(default_factory=lambda: {"signing_secret": "whsec_Canary0c5b2e"})

    def _signed(self, body: bytes, age: float, forged: bool) -> Delivery:
        secret = "whsec_wrong" if forged else self.secrets["signing_secret"]
        header = stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret, timestamp=int(time.time() - age)
        )
        return Delivery(body, {"Stripe-Signature": header, "Content-Type": "application/json"})

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        body = {"id": event_id, "object": "event", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}
        return self._signed(json.dumps(body).encode(), age, forged)

    def malformed(self) -> Delivery:
        return self._signed(b"{nope", 0, False)

    def sign_body(self, body: bytes) -> Delivery:
        return self._signed(body, 0, False)


@dataclass
class LinearSigner(Signer):
    provider: str = "linear"
    secrets: dict[str, str] = field(default_factory=lambda: {"signing_secret": "lin_wh_Canary_91d0"})

    def _signed(self, body: bytes, event_id: str, forged: bool) -> Delivery:
        secret = "wrong" if forged else self.secrets["signing_secret"]
        headers = {
            "Linear-Signature": _hmac_hex(secret, body),
            "Linear-Delivery": event_id,
            "Linear-Event": "Issue",
        }
        return Delivery(body, headers)

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        stamp = int((time.time() - age) * 1000)
        body = {"type": "Issue", "action": "create", "data": {"id": "i1"}, "webhookTimestamp": stamp}
        return self._signed(json.dumps(body).encode(), event_id, forged)

    def malformed(self) -> Delivery:
        return self._signed(b"nope", "bad-1", False)

    def sign_body(self, body: bytes) -> Delivery:
        return self._signed(body, "nested-1", False)


@dataclass
class TelegramSigner(Signer):
    provider: str = "telegram"
    secrets: dict[str, str] = field(default_factory=dict)  # filled from the fake's setWebhook call
    timestamped: bool = False

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        body = json.dumps({"update_id": int(event_id), "message": {"message_id": 1, "text": "hi"}}).encode()
        secret = "wrong-token" if forged else self.secrets["secret_token"]
        return Delivery(body, {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"})

    def malformed(self) -> Delivery:
        return Delivery(b"{", {"X-Telegram-Bot-Api-Secret-Token": self.secrets["secret_token"]})


@dataclass
class TwilioSigner(Signer):
    provider: str = "twilio"
    secrets: dict[str, str] = field(default_factory=lambda: {"auth_token": "twilio-auth-Canary-3c1d"})
    timestamped: bool = False

    def _signed(self, form: dict[str, list[str]], forged: bool) -> Delivery:
        from urllib.parse import urlencode

        token = "wrong" if forged else self.secrets["auth_token"]
        body = urlencode([(k, v) for k, values in form.items() for v in values]).encode()
        headers = {
            "X-Twilio-Signature": twilio_signature(token, self.url, form),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return Delivery(body, headers)

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        form = {
            "MessageSid": [f"SM{event_id}"],
            "From": ["+14158675309"],
            "To": ["+18005551212"],
            "Body": ["hi"],
        }
        return self._signed(form, forged)

    def malformed(self) -> Delivery:
        body = b"%zz=%%%"
        return Delivery(
            body, {"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"}
        )


@dataclass
class WhatsAppSigner(Signer):
    provider: str = "whatsapp"
    secrets: dict[str, str] = field(
        default_factory=lambda: {"app_secret": "meta-app-Canary-5e2f", "verify_token": "verify-Canary-8a"}
    )
    timestamped: bool = False

    def _signed(self, body: bytes, forged: bool) -> Delivery:
        secret = "wrong" if forged else self.secrets["app_secret"]
        return Delivery(body, {"X-Hub-Signature-256": "sha256=" + _hmac_hex(secret, body)})

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        message = {"id": f"wamid.{event_id}", "from": "15551234567", "text": {"body": "hi"}}
        body = {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"value": {"messages": [message]}}]}],
        }
        return self._signed(json.dumps(body).encode(), forged)

    def malformed(self) -> Delivery:
        return self._signed(b"{]", False)

    def sign_body(self, body: bytes) -> Delivery:
        return self._signed(body, False)


GOOGLE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
GOOGLE_CERTS = {
    "kid-test": GOOGLE_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
}
PUSHER = "gmail-push@tendril-test.iam.gserviceaccount.com"


@dataclass
class GmailSigner(Signer):
    provider: str = "gmail"
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            "audience": "https://hooks.tendril.test/gmail",
            "service_account_email": PUSHER,
        }
    )

    def token(self, *, age: float = 0, forged: bool = False) -> str:
        now = int(time.time() - age)
        claims = {
            "iss": "https://accounts.google.com",
            "aud": self.secrets["audience"],
            "email": PUSHER,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            "sub": "1",
        }
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if forged else GOOGLE_KEY
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return jwt.encode(crypt.RSASigner.from_string(pem, key_id="kid-test"), claims).decode()

    def deliver(self, event_id: str, *, age: float = 0, forged: bool = False) -> Delivery:
        data = base64.b64encode(
            json.dumps({"emailAddress": "ada@example.com", "historyId": "42"}).encode()
        ).decode()
        body = {
            "message": {"data": data, "messageId": event_id},
            "subscription": "projects/p/subscriptions/s",
        }
        # Google's tokens live an hour: a stale delivery carries one issued two hours ago.
        headers = {"Authorization": f"Bearer {self.token(age=7200 if age else 0, forged=forged)}"}
        return Delivery(json.dumps(body).encode(), headers)

    def malformed(self) -> Delivery:
        return Delivery(b"{{", {"Authorization": f"Bearer {self.token()}"})


def signers() -> list[Signer]:
    return [
        TelegramSigner(),
        SlackSigner(),
        DiscordSigner(),
        WhatsAppSigner(),
        TwilioSigner(),
        GmailSigner(),
        GitHubSigner(),
        LinearSigner(),
        StripeSigner(),
    ]
