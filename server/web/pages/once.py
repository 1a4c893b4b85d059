"""A secret shown once on a page that can be reloaded safely (post/redirect/get).

The form's POST makes the secret (a new API key, an agent's new MCP key), puts it in a short-lived
cookie sealed with the master key and bound to the browser session and the page, and redirects (303)
to a GET of that page, which shows it and clears the cookie. Reloading the page, or coming back to
it, shows the secret no more and never posts the form again (which would make yet another key).
"""

from __future__ import annotations

import json
import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server.web.reading import core_of
from storage.flows import WebSession

COOKIE = "tendril_once"
TTL_SECONDS = 120  # from the form's answer to the browser following its redirect


def _purpose(session: WebSession) -> str:
    return f"one-time page:{session.id}"


def redirect_showing(
    request: Request, session: WebSession, path: str, secret: str, query: str = ""
) -> RedirectResponse:
    """Answer a form by redirecting to `path` (with `query`), which shows `secret` once (see take)."""
    payload = json.dumps({"path": path, "secret": secret, "until": time.time() + TTL_SECONDS}).encode()
    response = RedirectResponse(f"{path}?{query}" if query else path, status_code=303)
    response.set_cookie(
        COOKIE,
        core_of(request).keys_at_rest.seal_for(_purpose(session), payload),
        max_age=TTL_SECONDS,
        httponly=True,
        samesite="strict",
        secure=core_of(request).settings.public_url.startswith("https://"),
        path=path,
    )
    return response


def take(request: Request, session: WebSession) -> str | None:
    """The secret sealed for this session and this page, if it has not expired."""
    sealed = request.cookies.get(COOKIE)
    opened = core_of(request).keys_at_rest.open_for(_purpose(session), sealed) if sealed else None
    if opened is None:
        return None
    payload = json.loads(opened)
    if payload["path"] != request.url.path or payload["until"] < time.time():
        return None
    return str(payload["secret"])


def shown_once(request: Request, response: Response) -> Response:
    """The page that showed the secret (never cached, as every page), with the cookie gone."""
    response.delete_cookie(COOKIE, path=request.url.path)
    return response
