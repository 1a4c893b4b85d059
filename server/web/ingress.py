"""The provider webhook receiver, `POST` (and WhatsApp's `GET`)
/api/v1/connectors/webhooks/{provider}/{endpointId}, as plain ASGI in front of the router.

It is the hottest path in Tendril: a provider may push thousands of events a second. Plain ASGI
skips Starlette's Request, route matching and exception middleware, whose per-request cost was
larger than the verification itself. It needs none of them: no API key (the provider's signature is
the authentication), one path shape, and its own error answers.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors import Inbound, Refused
from server.core.links import RECEIVER_PREFIX, Links
from server.core.webhooks.ingest import WebhookIngest
from server.logs import access_note
from server.web.errors import HttpProblem, response_for

_METHODS = ("POST", "GET")
RECEIVER_ROUTE = RECEIVER_PREFIX + "{provider}/{endpointId}"  # as the access log and metrics name it


class WebhookIngress:
    def __init__(self, app: ASGIApp, ingest: WebhookIngest, links: Links, max_body_bytes: int) -> None:
        self.app = app
        self.ingest = ingest
        self.links = links
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(RECEIVER_PREFIX):
            await self.app(scope, receive, send)
            return
        provider, _, endpoint_ref = path[len(RECEIVER_PREFIX) :].partition("/")
        if not provider or not endpoint_ref or "/" in endpoint_ref:
            await self.app(scope, receive, send)  # not a receiver URL: the API's 404
            return
        if (note := access_note(scope)) is not None:
            note.route = RECEIVER_ROUTE
        method: str = scope["method"]
        if method not in _METHODS:
            problem = HttpProblem(
                405, f"{method} is not allowed here; use POST", headers={"Allow": "POST, GET"}
            )
            await response_for(problem, f"{method} {path}")(scope, receive, send)
            return
        try:
            inbound = await self._inbound(scope, receive)
            reply = await self.ingest.receive(provider, endpoint_ref, inbound)
        except Refused as refusal:
            await _answer(send, refusal.status, json.dumps({"error": refusal.reason}).encode())
            return
        except Exception as exc:  # logged with a reference; the provider sees only that
            await response_for(exc, f"{method} {path}")(scope, receive, send)
            return
        await _answer(send, reply.status, reply.body, reply.content_type)

    async def _inbound(self, scope: Scope, receive: Receive) -> Inbound:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdecimal() or int(declared) > limit):
            raise Refused(413, f"body larger than {limit} bytes")
        body = await _bounded_body(receive, limit)
        query = scope["query_string"].decode("latin-1")
        return Inbound(
            method=scope["method"],
            # What the provider signed (Twilio): our public base, not the address we were reached on.
            url=self.links.webhook_base_url + scope["path"] + ("?" + query if query else ""),
            headers=headers,
            body=body,
            now=time.time(),
            query=dict(parse_qsl(query, keep_blank_values=True)) if query else {},
        )


async def _bounded_body(receive: Receive, limit: int) -> bytes:
    message: Message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= limit:
        return body  # the usual case: one message
    received = bytearray(body)
    while message.get("more_body", False):
        if len(received) > limit:
            break
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "the client went away before sending the whole body")
        received += message.get("body", b"")
    if len(received) > limit:
        raise Refused(413, f"body larger than {limit} bytes")
    return bytes(received)


async def _answer(send: Send, status: int, body: bytes, content_type: str = "application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
