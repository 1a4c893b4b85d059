"""Twilio: `X-Twilio-Signature`, base64 HMAC-SHA1 (auth token) of the URL Twilio requested plus
each POST parameter `name + value`, sorted by name. JSON bodies sign the URL with `bodySHA256`."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit

from connectors import Connector
from connectors._webhook import Event, Inbound, Refused, Reply, forged, form_body, json_object, same

TWIML_OK = Reply(200, b'<?xml version="1.0" encoding="UTF-8"?><Response/>', "text/xml")


def signature(auth_token: str, url: str, params: Mapping[str, list[str]]) -> str:
    payload = url + "".join(name + value for name in sorted(params) for value in sorted(params[name]))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> list[str]:
    """Twilio's own validator accepts the URL with and without the scheme's default port."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is None and default:
        return [url, urlunsplit(parts._replace(netloc=f"{host}:{default}"))]
    if parts.port == default:
        return [url, urlunsplit(parts._replace(netloc=host))]
    return [url]


connector = Connector.load(__file__)


@connector.receiver
class TwilioReceiver:
    def receive(self, inbound: Inbound, secrets: Mapping[str, str]) -> Event:
        given, token = inbound.header("x-twilio-signature"), secrets["auth_token"]
        is_json = inbound.header("content-type").startswith("application/json")
        params = {} if is_json else form_body(inbound)
        if not any(same(given, signature(token, url, params)) for url in _url_variants(inbound.url)):
            raise forged()
        if is_json:
            claimed = parse_qs(urlsplit(inbound.url).query).get("bodySHA256", [""])[-1]
            if not same(claimed, hashlib.sha256(inbound.body).hexdigest()):
                raise forged("bodySHA256 does not match the body")
            body = json_object(inbound)
            event_id = str(body.get("id") or body.get("sid") or "")
            if not event_id:
                raise Refused(400, "event id missing")
            return Event(event_id, f"twilio.{body.get('type', 'event')}", body, reply=TWIML_OK)
        form = {name: values[-1] for name, values in params.items()}
        sid = form.get("MessageSid") or form.get("SmsSid") or form.get("CallSid")
        if not sid:
            raise Refused(400, "MessageSid or CallSid missing")
        if "CallSid" in form and "MessageSid" not in form:
            status = form.get("CallStatus", "")
            return Event(f"{sid}:{status}", f"twilio.call.{status or 'incoming'}", form, reply=TWIML_OK)
        status = form.get("MessageStatus") or form.get("SmsStatus") or "received"
        kind = "message" if status == "received" else f"message.{status}"
        return Event(f"{sid}:{status}", f"twilio.{kind}", form, reply=TWIML_OK)
