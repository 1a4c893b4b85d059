"""Each provider's verification, fed deliveries signed by the provider's own helper library or its
published test vector; forgeries, stale timestamps and malformed bodies are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import stripe
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from google.auth import crypt, jwt
from slack_sdk.signature import SignatureVerifier

from connectors import Event, Inbound, Refused, Reply
from connectors.discord.webhook import DiscordReceiver
from connectors.github.webhook import GitHubReceiver
from connectors.gmail.webhook import GmailPushReceiver
from connectors.linear.webhook import LinearReceiver
from connectors.slack.webhook import SlackReceiver
from connectors.stripe.webhook import StripeReceiver
from connectors.telegram.webhook import TelegramReceiver
from connectors.twilio.webhook import TwilioReceiver, signature
from connectors.whatsapp.webhook import WhatsAppReceiver

NOW = time.time()


def inbound(
    body: bytes | str, headers: dict[str, str], *, url: str = "https://hub.example/x", **kw: Any
) -> Inbound:
    data = body.encode() if isinstance(body, str) else body
    return Inbound(
        kw.pop("method", "POST"),
        url,
        {k.lower(): v for k, v in headers.items()},
        data,
        kw.pop("now", NOW),
        **kw,
    )


def refused(call: Any, status: int = 403) -> str:
    with pytest.raises(Refused) as caught:
        call()
    assert caught.value.status == status, caught.value.reason
    return caught.value.reason


# -- Slack ----------------------------------------------------------------------------------------
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_headers(body: str, timestamp: float = NOW, secret: str = SLACK_SECRET) -> dict[str, str]:
    stamp = str(int(timestamp))
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body),
        "Content-Type": "application/json",
    }


def test_slack_doc_vector_and_sdk_signed_events() -> None:
    doc_body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    doc = inbound(
        doc_body,
        {
            "X-Slack-Request-Timestamp": "1531420618",
            "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        now=1531420618 + 10,
    )
    command = SlackReceiver().receive(doc, {"signing_secret": SLACK_SECRET})
    assert isinstance(command, Event) and command.event_key == "slack.slash_command"
    assert command.event_id == "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"

    body = json.dumps(
        {"type": "event_callback", "event_id": "Ev123", "event": {"type": "app_mention", "text": "hi"}}
    )
    event = SlackReceiver().receive(inbound(body, slack_headers(body)), {"signing_secret": SLACK_SECRET})
    assert isinstance(event, Event) and (event.event_id, event.event_key) == ("Ev123", "slack.app_mention")

    challenge = json.dumps(
        {"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    )
    answer = SlackReceiver().receive(
        inbound(challenge, slack_headers(challenge)), {"signing_secret": SLACK_SECRET}
    )
    assert answer == Reply(200, b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")


def test_slack_refusals() -> None:
    body = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": {"type": "message"}})
    receiver, secrets = SlackReceiver(), {"signing_secret": SLACK_SECRET}
    refused(lambda: receiver.receive(inbound(body, slack_headers(body, secret="wrong")), secrets))
    refused(lambda: receiver.receive(inbound(body + " ", slack_headers(body)), secrets))  # body tampered
    assert "window" in refused(
        lambda: receiver.receive(inbound(body, slack_headers(body, NOW - 301)), secrets)
    )
    refused(lambda: receiver.receive(inbound("{nope", slack_headers("{nope")), secrets), 400)


# -- Discord --------------------------------------------------------------------------------------
DISCORD_KEY = ed25519.Ed25519PrivateKey.generate()
DISCORD_PUBLIC = (
    DISCORD_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
)


def discord_headers(
    body: str, timestamp: float = NOW, key: ed25519.Ed25519PrivateKey = DISCORD_KEY
) -> dict[str, str]:
    stamp = str(int(timestamp))
    return {
        "X-Signature-Timestamp": stamp,
        "X-Signature-Ed25519": key.sign(stamp.encode() + body.encode()).hex(),
    }


def test_discord_ping_interactions_and_forgeries_get_401() -> None:
    receiver, secrets = DiscordReceiver(), {"public_key": DISCORD_PUBLIC}
    ping = '{"type":1}'
    assert receiver.receive(inbound(ping, discord_headers(ping)), secrets) == Reply(
        200, b'{"type":1}', "application/json"
    )
    command = json.dumps({"id": "1180000000000000001", "type": 2, "token": "t", "data": {"name": "Deploy"}})
    event = receiver.receive(inbound(command, discord_headers(command)), secrets)
    assert isinstance(event, Event) and event.event_key == "discord.application_command.deploy"
    assert event.reply is not None and event.reply.body == b'{"type":5}'
    app_ping = '{"version":1,"application_id":"1","type":0}'
    assert receiver.receive(inbound(app_ping, discord_headers(app_ping)), secrets) == Reply(204)
    other = ed25519.Ed25519PrivateKey.generate()
    refused(lambda: receiver.receive(inbound(ping, discord_headers(ping, key=other)), secrets), 401)
    refused(lambda: receiver.receive(inbound(ping, {}), secrets), 401)
    refused(lambda: receiver.receive(inbound(ping, discord_headers(ping, NOW - 400)), secrets), 401)


# -- GitHub ---------------------------------------------------------------------------------------
def test_github_published_vector_and_events() -> None:
    vector = inbound(
        "Hello, World!",
        {
            "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "X-GitHub-Event": "issues",
        },
    )
    # The documented vector signs a body that is not JSON: verification passes, parsing refuses.
    refused(lambda: GitHubReceiver().receive(vector, {"secret": "It's a Secret to Everybody"}), 400)
    body = json.dumps({"action": "opened", "issue": {"number": 1}})
    signed = "sha256=" + hmac.new(b"s3cret", body.encode(), hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": signed, "X-GitHub-Delivery": "d-1", "X-GitHub-Event": "issues"}
    event = GitHubReceiver().receive(inbound(body, headers), {"secret": "s3cret"})
    assert isinstance(event, Event) and (event.event_id, event.event_key) == ("d-1", "github.issues.opened")
    refused(lambda: GitHubReceiver().receive(inbound(body, headers), {"secret": "other"}))


# -- Stripe ---------------------------------------------------------------------------------------
def test_stripe_sdk_signed_events_and_stale_ones() -> None:
    secret = "whsec_test_secret"
    body = json.dumps({"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}})
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=int(NOW))
    event = StripeReceiver().receive(inbound(body, {"Stripe-Signature": header}), {"signing_secret": secret})
    assert isinstance(event, Event) and (event.event_id, event.event_key) == ("evt_1", "stripe.invoice.paid")
    rolled = f"{header},v1={'0' * 64}"  # several v1 while secrets roll: any may match
    assert StripeReceiver().receive(inbound(body, {"Stripe-Signature": rolled}), {"signing_secret": secret})
    old = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=int(NOW) - 301)
    refused(
        lambda: StripeReceiver().receive(inbound(body, {"Stripe-Signature": old}), {"signing_secret": secret})
    )
    refused(
        lambda: StripeReceiver().receive(
            inbound(body, {"Stripe-Signature": header}), {"signing_secret": "whsec_x"}
        )
    )


# -- Linear ---------------------------------------------------------------------------------------
def test_linear_signature_and_timestamp_window() -> None:
    secret = "lin_wh_secret"

    def delivery(stamp_ms: float) -> Inbound:
        body = json.dumps(
            {"type": "Issue", "action": "create", "data": {"id": "i1"}, "webhookTimestamp": stamp_ms}
        )
        sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        return inbound(body, {"Linear-Signature": sig, "Linear-Delivery": "ld-1", "Linear-Event": "Issue"})

    event = LinearReceiver().receive(delivery(NOW * 1000), {"signing_secret": secret})
    assert isinstance(event, Event) and (event.event_id, event.event_key) == ("ld-1", "linear.issue.create")
    refused(lambda: LinearReceiver().receive(delivery(NOW * 1000 - 61_000), {"signing_secret": secret}))
    refused(lambda: LinearReceiver().receive(delivery(NOW * 1000), {"signing_secret": "other"}))


# -- Twilio ---------------------------------------------------------------------------------------
def test_twilio_published_vectors() -> None:
    params = {
        "CallSid": ["CA1234567890ABCDE"],
        "Caller": ["+14158675309"],
        "Digits": ["1234"],
        "From": ["+14158675309"],
        "To": ["+18005551212"],
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="  # twilio-python's test
    form = "&".join(f"{k}={v[0].replace('+', '%2B')}" for k, v in params.items())
    headers = {
        "X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    event = TwilioReceiver().receive(inbound(form, headers, url=url), {"auth_token": "12345"})
    assert isinstance(event, Event) and event.event_key == "twilio.call.incoming"
    ported = {**headers, "X-Twilio-Signature": "kvajT1Ptam85bY51eRf/AJRuM3w="}  # signed with :443
    assert TwilioReceiver().receive(inbound(form, ported, url=url), {"auth_token": "12345"})
    refused(
        lambda: TwilioReceiver().receive(inbound(form + "&x=1", headers, url=url), {"auth_token": "12345"})
    )


# -- WhatsApp -------------------------------------------------------------------------------------
def test_whatsapp_challenge_and_signed_messages() -> None:
    secrets = {"app_secret": "meta-app-secret", "verify_token": "verify-me"}
    query = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    answer = WhatsAppReceiver().receive(inbound(b"", {}, method="GET", query=query), secrets)
    assert answer == Reply(200, b"1158201444")
    bad = {**query, "hub.verify_token": "nope"}
    refused(lambda: WhatsAppReceiver().receive(inbound(b"", {}, method="GET", query=bad), secrets))
    body = json.dumps(
        {"entry": [{"changes": [{"value": {"messages": [{"id": "wamid.ABC", "text": {"body": "hi"}}]}}]}]}
    )
    sig = "sha256=" + hmac.new(b"meta-app-secret", body.encode(), hashlib.sha256).hexdigest()
    event = WhatsAppReceiver().receive(inbound(body, {"X-Hub-Signature-256": sig}), secrets)
    assert isinstance(event, Event) and (event.event_id, event.event_key) == ("wamid.ABC", "whatsapp.message")
    refused(lambda: WhatsAppReceiver().receive(inbound(body, {"X-Hub-Signature-256": "sha256=00"}), secrets))


# -- Gmail push -----------------------------------------------------------------------------------
GOOGLE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
GOOGLE_PEM = GOOGLE_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
GOOGLE_PUBLIC = (
    GOOGLE_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
PUSHER = "gmail-push@tendril-test.iam.gserviceaccount.com"


def google_token(**claims: Any) -> str:
    """A Pub/Sub push token as Google signs them (RS256, kid header), by google-auth's own signer."""
    now = int(NOW)
    base = {
        "iss": "https://accounts.google.com",
        "aud": "https://hub.example/push",
        "email": PUSHER,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        "sub": "1",
    }
    signer = crypt.RSASigner.from_string(GOOGLE_PEM, key_id="kid-1")
    return jwt.encode(signer, {**base, **claims}).decode()


def test_gmail_push_needs_a_google_signed_token_for_the_configured_account() -> None:
    receiver = GmailPushReceiver({"kid-1": GOOGLE_PUBLIC})
    secrets = {"audience": "https://hub.example/push", "service_account_email": PUSHER}
    data = base64.b64encode(
        json.dumps({"emailAddress": "ada@example.com", "historyId": "9876543210"}).encode()
    ).decode()
    body = json.dumps(
        {"message": {"data": data, "messageId": "m-1"}, "subscription": "projects/p/subscriptions/s"}
    )
    event = receiver.receive(inbound(body, {"Authorization": f"Bearer {google_token()}"}), secrets)
    assert isinstance(event, Event) and event.event_id == "m-1"
    assert event.payload["data"] == {"emailAddress": "ada@example.com", "historyId": "9876543210"}
    refused(lambda: receiver.receive(inbound(body, {}), secrets))  # no token, ever
    for claims in (
        {"aud": "https://elsewhere"},
        {"email": "someone@else.com"},
        {"iss": "https://evil"},
        {"exp": int(NOW) - 10, "iat": int(NOW) - 3700},
    ):
        token = google_token(**claims)
        refused(
            lambda token=token: receiver.receive(inbound(body, {"Authorization": f"Bearer {token}"}), secrets)
        )


# -- Telegram -------------------------------------------------------------------------------------
def test_telegram_secret_token() -> None:
    body = json.dumps({"update_id": 10, "message": {"text": "hi"}})
    secrets = {"secret_token": "s3cr3t_TOKEN"}
    event = TelegramReceiver().receive(
        inbound(body, {"X-Telegram-Bot-Api-Secret-Token": "s3cr3t_TOKEN"}), secrets
    )
    assert isinstance(event, Event) and (event.event_id, event.event_key) == ("10", "telegram.message")
    refused(
        lambda: TelegramReceiver().receive(inbound(body, {"X-Telegram-Bot-Api-Secret-Token": "x"}), secrets)
    )
    refused(lambda: TelegramReceiver().receive(inbound(body, {}), secrets))
