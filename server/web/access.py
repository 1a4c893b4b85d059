"""The access log and the HTTP request metrics: one ASGI middleware around the whole app.

Per request it writes one line (method, route template, status, duration, client, and the key or
agent that authenticated) to the `tendril.access` logger, and counts the request in
`tendril_http_requests` and `tendril_http_request_duration_seconds`. The route is the template the
router matched (`/api/v1/connections/{id}`), never the concrete path or its query string, so no id
or token a client put in a URL reaches the log or a metric label. The principal is what the places
that authenticate noted on the request (server.logs.AccessNote): nothing here reads a credential.
"""

from __future__ import annotations

import logging
import time

from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core.metrics import Metrics
from server.logs import ACCESS_SCOPE_KEY, NOTHING_TO_REDACT, AccessNote

logger = logging.getLogger("tendril.access")

# Probes asked every few seconds by machines: logged only when TENDRIL_ACCESS_LOG_PROBES is set.
PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED = "unmatched"
LINE = "%s %s %d %.1fms client=%s%s"
# The answer of a request whose client left before any answer was sent (nginx's convention).
CLIENT_CLOSED = 499


def route_template(scope: Scope) -> str:
    """The route the router chose (the innermost, for the app mounted at /), as declared."""
    route = scope.get("route")
    if isinstance(route, Route):
        return route.path
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"  # nothing inside the mounted app matched
    return UNMATCHED


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Metrics, *, log: bool = True, log_probes: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log
        self.log_probes = log_probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        note = scope[ACCESS_SCOPE_KEY] = AccessNote()
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            status = status or 500
            raise
        finally:
            seconds = time.perf_counter() - started
            route = note.route or route_template(scope)
            method: str = scope["method"]
            status = status or CLIENT_CLOSED
            self.metrics.http_request(method, route, status, seconds)
            if (
                self.log
                and logger.isEnabledFor(logging.INFO)
                and (self.log_probes or route not in PROBE_ROUTES)
            ):
                _write(scope, note, method, route, status, seconds)


def _write(scope: Scope, note: AccessNote, method: str, route: str, status: int, seconds: float) -> None:
    peer = scope.get("client")
    fields: dict[str, object] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "client": peer[0] if peer else None,
        # The route is a template from our code, never the path a client sent, and the rest are
        # numbers, an address and UUIDs: no secret can be in them, so the line skips the scan.
        NOTHING_TO_REDACT: True,
    }
    who = ""
    if note.key_id is not None:
        fields["key_id"] = note.key_id  # a UUID: written as text, never scanned for secrets
        who = f" key={note.key_id}"
    if note.agent_id is not None:
        fields["agent_id"] = note.agent_id
        who += f" agent={note.agent_id}"
    # makeRecord + handle is logger.info without looking up the calling frame (nobody reads an
    # access line's source position), a few microseconds on every request.
    args = (method, route, status, fields["duration_ms"], fields["client"], who)
    logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, LINE, args, None, extra=fields))
