"""Who is at the browser: a signed-in owner's session cookie and its CSRF token.

URLs handed to a person are never pre-authenticated (MCP spec): pages ask the owner to sign in with
an API key, then carry a random session token in an HttpOnly, SameSite=Lax cookie. Only its
SHA-256 digest is stored. Every state-changing form carries the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server.errors import ApiError
from server.web._http import hub_of
from storage.flows import WebSession

COOKIE = "tendril_session"
SESSION_TTL = timedelta(hours=12)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def current_session(request: Request) -> WebSession | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 200:
        return None
    return await hub_of(request).flows.session_by_token_hash(_digest(token))


async def start_session(request: Request, owner_id: object, response: Response) -> None:
    hub = hub_of(request)
    token = secrets.token_urlsafe(32)
    await hub.flows.create_session(
        owner_id,  # type: ignore[arg-type]
        token_hash=_digest(token),
        csrf_token=secrets.token_urlsafe(24),
        ttl=SESSION_TTL,
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to the callback
        secure=hub.settings.public_url.startswith("https://"),
        path="/",
    )


async def end_session(request: Request, response: Response) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        await hub_of(request).flows.revoke_session(_digest(token))
    response.delete_cookie(COOKIE, path="/")


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only local paths: a sign-in form must not become an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/dashboard"
    return value if not urlsplit(value).netloc else "/dashboard"


def check_csrf(request: Request, session: WebSession, submitted: object) -> None:
    if not isinstance(submitted, str) or not hmac.compare_digest(submitted, session.csrf_token):
        raise ApiError(403, "this form has expired; reload the page and try again")
    origin = request.headers.get("origin")
    public = urlsplit(hub_of(request).settings.public_url)
    if origin and origin not in (
        f"{public.scheme}://{public.netloc}",
        f"{request.url.scheme}://{request.url.netloc}",
    ):
        raise ApiError(403, "cross-site form submission refused")
