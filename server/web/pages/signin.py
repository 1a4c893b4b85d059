"""Signing in with an owner API key, and out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server.core.errors import DomainError, Unauthenticated
from server.web.errors import HttpProblem
from server.web.pages.forms import Form, read_form
from server.web.pages.render import page
from server.web.pages.session import end_session, refusal_page, safe_next, set_session_cookie
from server.web.reading import core_of, guarded


class SignInForm(Form):
    api_key: str | None = None


def _form(request: Request, error: str | None = None, status: int = 200) -> Response:
    return page(
        request,
        "signin.html",
        "Sign in",
        status,
        error=error,
        next=safe_next(request.query_params.get("next")),
    )


async def signin(request: Request) -> Response:
    async def work() -> Response:
        if request.method == "GET":
            return _form(request)
        core = core_of(request)
        try:
            form = await read_form(request, SignInForm, core.settings.max_body_bytes)
        except (DomainError, HttpProblem) as error:  # a malformed or oversized form: said on the page
            return refusal_page(request, error)
        try:
            principal = await core.identity.authenticate_owner(form.api_key)
        except Unauthenticated:
            return _form(request, "That API key is not valid.", 401)
        response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        set_session_cookie(request, await core.identity.open_session(principal.owner_id), response)
        return response

    return await guarded(request, work)


async def signout(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    await end_session(request, response)
    return response
