"""/dashboard/keys: the owner's API keys (name, prefix, permissions, rate limit, last use,
revocation). Create one with chosen permissions, shown once on the page that made it; revoke one.
Admin only, as the REST routes for keys (server/web/api/agents.py)."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from auth import api_keys
from server.core.errors import Invalid, NotFound
from server.core.identity import RATE_LIMIT_MAX, CreatedKey
from server.web.errors import status_of
from server.web.pages import once
from server.web.pages.forms import Form, read_form
from server.web.pages.render import page
from server.web.pages.session import check_csrf, signed_in
from server.web.reading import core_of, uuid_of
from storage.flows import WebSession

PATH = "/dashboard/keys"


class KeyForm(Form):
    name: str = ""
    permissions: list[str] = Field(default_factory=list[str])  # one checkbox per permission
    rate_limit: str = ""  # requests per minute; blank: the server's default

    def per_minute(self) -> int | None:
        text = self.rate_limit.strip()
        if not text:
            return None
        if not text.isdecimal() or not 1 <= int(text) <= RATE_LIMIT_MAX:
            raise Invalid(
                f"the rate limit must be a whole number of requests per minute from 1 to {RATE_LIMIT_MAX},"
                " or blank for the server's default",
                field="rate_limit",
            )
        return int(text)


async def _keys_page(
    request: Request,
    session: WebSession,
    *,
    form: KeyForm | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    keys = await core_of(request).identity.list_api_keys(session.owner_id)
    return page(
        request,
        "keys.html",
        "API keys",
        status,
        path=PATH,
        keys=keys,
        csrf=session.csrf_token,
        permissions=api_keys.PERMISSIONS,
        form=form or KeyForm(permissions=list(api_keys.DEFAULT_PERMISSIONS)),
        error=error,
        session_key=session.key_id,
    )


@signed_in("admin")
async def keys_page(request: Request, session: WebSession) -> Response:
    """The owner's API keys, and a form to create one"""
    return await _keys_page(request, session)


@signed_in("admin")
async def create_key(request: Request, session: WebSession) -> Response:
    """Create an API key; the answer shows it, once"""
    core = core_of(request)
    form = await read_form(request, KeyForm, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    try:
        created = await core.identity.create_api_key(
            session.owner_id,
            name=form.name.strip(),
            permissions=form.permissions,
            rate_limit=form.per_minute(),
        )
    except Invalid as error:
        return await _keys_page(request, session, form=form, error=error.message, status=status_of(error))
    return once.redirect_showing(request, session, f"{PATH}/{created.record.id}/created", created.plaintext)


@signed_in("admin")
async def created_key_page(request: Request, session: WebSession) -> Response:
    """A new API key, shown once after it was made"""
    key_id = uuid_of(request.path_params["key_id"], "key id")
    keys = await core_of(request).identity.list_api_keys(session.owner_id)
    record = next((k for k in keys if k.id == key_id), None)
    if record is None:
        raise NotFound("API key not found")
    plaintext = once.take(request, session)
    if plaintext is None:  # shown already
        return RedirectResponse(PATH, status_code=303)
    created = CreatedKey(record, plaintext)
    response = page(request, "key_created.html", f"API key {record.name} created", path=PATH, key=created)
    return once.shown_once(request, response)


@signed_in("admin")
async def revoke_key(request: Request, session: WebSession) -> Response:
    """Revoke an API key; it and the browser sessions signed in with it stop working at once"""
    core = core_of(request)
    form = await read_form(request, Form, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    await core.identity.revoke_api_key(session.owner_id, uuid_of(request.path_params["key_id"], "key id"))
    return RedirectResponse(PATH, status_code=303)
