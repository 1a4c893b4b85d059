"""Signing in with an owner API key, and out.

Sign-in is protected from cross-site posts (login CSRF: a victim signed into an attacker's tenant
would type their own credentials into it): the form carries a token that must match a cookie set
with the form (SameSite=Strict, so another site's post does not carry it), and a post whose Origin
is not Tendril's is refused.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server.core.errors import DomainError, Forbidden, Unauthenticated
from server.core.throttle import Throttled
from server.logs import note_key
from server.web.errors import HttpProblem
from server.web.pages.forms import Form, read_form
from server.web.pages.render import page
from server.web.pages.session import (
    check_origin,
    end_session,
    refusal_page,
    safe_next,
    set_session_cookie,
)
from server.web.reading import client_of, core_of, guarded

SIGNIN_COOKIE = "tendril_signin"
SIGNIN_TTL_SECONDS = 3600


class SignInForm(Form):
    api_key: str | None = None
    signin_token: str | None = None


def _form(request: Request, error: str | None = None, status: int = 200) -> Response:
    """The form, with a fresh pre-session token in it and in its cookie."""
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "signin.html",
        "Sign in",
        status,
        error=error,
        next=safe_next(request.query_params.get("next")),
        signin_token=token,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=SIGNIN_TTL_SECONDS,
        httponly=True,
        samesite="strict",
        secure=core_of(request).settings.public_url.startswith("https://"),
        path="/signin",
    )
    return response


def _check_pre_session(request: Request, form: SignInForm) -> None:
    check_origin(request)
    expected = request.cookies.get(SIGNIN_COOKIE)
    if not expected or not form.signin_token or not hmac.compare_digest(expected, form.signin_token):
        raise Forbidden("this sign-in form has expired or was not Tendril's; reload it and try again")


async def signin(request: Request) -> Response:
    async def work() -> Response:
        if request.method == "GET":
            return _form(request)
        core = core_of(request)
        try:
            form = await read_form(request, SignInForm, core.settings.max_body_bytes)
            _check_pre_session(request, form)
        except (DomainError, HttpProblem) as error:  # malformed, oversized or cross-site
            return refusal_page(request, error)
        try:
            opened = await core.identity.sign_in(form.api_key, client_of(request))
        except Unauthenticated:
            return _form(request, "That API key is not valid.", 401)
        except Throttled as throttled:
            return refusal_page(request, throttled)
        note_key(request.scope, opened.session.key_id)
        response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        set_session_cookie(request, opened, response)
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    return await guarded(request, work)


async def signout(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    await end_session(request, response)
    return response
