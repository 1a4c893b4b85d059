"""Who is at the browser: a signed-in owner's session cookie and its CSRF token.

URLs handed to a person are never pre-authenticated (MCP spec): pages ask the owner to sign in with
an API key, then carry a random session token in an HttpOnly, SameSite=Lax cookie (the core keeps
only its digest). Every state-changing form carries the session's CSRF token.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from auth import api_keys
from auth.api_keys import Permission
from server.core.audit import Actor, acting_as
from server.core.errors import DomainError, Forbidden
from server.core.identity import SESSION_TTL, OpenedSession
from server.core.throttle import Throttled
from server.logs import note_key
from server.web.errors import HttpProblem, status_of
from server.web.pages.render import message
from server.web.reading import core_of, guarded, parse
from storage.flows import WebSession

COOKIE = "tendril_session"

SessionPage = Callable[[Request, WebSession], Awaitable[Response]]


async def current_session(request: Request) -> WebSession | None:
    session = await core_of(request).identity.session(request.cookies.get(COOKIE))
    if session is not None:
        note_key(request.scope, session.key_id)
    return session


def set_session_cookie(request: Request, opened: OpenedSession, response: Response) -> None:
    response.set_cookie(
        COOKIE,
        opened.token,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to the callback
        secure=core_of(request).settings.public_url.startswith("https://"),
        path="/",
    )


async def end_session(request: Request, response: Response) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        await core_of(request).identity.close_session(token)
    response.delete_cookie(COOKIE, path="/")


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only local paths: a sign-in form must not become an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/dashboard"
    return value if not urlsplit(value).netloc else "/dashboard"


def check_csrf(request: Request, session: WebSession, submitted: str | None) -> None:
    if submitted is None or not hmac.compare_digest(submitted, session.csrf_token):
        raise Forbidden("this form has expired; reload the page and try again")
    check_origin(request)


def check_origin(request: Request) -> None:
    """A form posted from another site is refused (browsers send Origin with every form post)."""
    origin = request.headers.get("origin")
    public = urlsplit(core_of(request).settings.public_url)
    if origin and origin not in (
        f"{public.scheme}://{public.netloc}",
        f"{request.url.scheme}://{request.url.netloc}",
    ):
        raise Forbidden("cross-site form submission refused")


def refusal_page(request: Request, error: DomainError | HttpProblem) -> Response:
    status = error.status if isinstance(error, HttpProblem) else status_of(error)
    page = message(request, "Something went wrong", error.message, status)
    if isinstance(error, Throttled):
        page.headers["Retry-After"] = str(int(error.retry_after))
    return page


@dataclass(frozen=True, slots=True)
class PageSpec:
    """What a signed-in page declares (the OpenAPI document describes the ones under /api/v1)."""

    permission: Permission
    query: type[BaseModel] | None
    summary: str
    description: str


def signed_in(
    permission: Permission, *, query: type[BaseModel] | None = None
) -> Callable[[SessionPage], Callable[[Request], Awaitable[Response]]]:
    """A page for a signed-in owner whose session's key has `permission` (the one the REST route
    doing the same thing needs); others are sent to sign in and brought back. A refusal is shown
    as a page; anything unexpected is the API's 500 with a reference. With `query`, the query
    string is parsed into that model first, as `request.state.query`."""

    def wrap(handler: SessionPage) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            async def work() -> Response:
                session = await current_session(request)
                if session is None:
                    return sign_in_redirect(request)
                try:
                    if not api_keys.grants(session.permissions, permission):
                        raise Forbidden(f"the API key you signed in with lacks the '{permission}' permission")
                    if query is not None:
                        request.state.query = parse(query, dict(request.query_params))
                    with acting_as(Actor.session(session.key_id)):  # whom the audit trail names
                        return await handler(request, session)
                except (DomainError, HttpProblem) as error:
                    return refusal_page(request, error)

            return await guarded(request, work)

        summary, _, description = (handler.__doc__ or "").strip().partition("\n")
        route.__name__ = handler.__name__
        route.permission = permission  # type: ignore[attr-defined]
        route.page = PageSpec(permission, query, summary.strip(), inspect.cleandoc(description))  # type: ignore[attr-defined]
        return route

    return wrap
