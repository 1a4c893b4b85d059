"""Completing a connection in the browser: the connect page (the credential form, or the way to
the provider's consent screen) and the OAuth start and callback."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from server.core.errors import DomainError, NotFound
from server.core.oauth import OAuthProblem, Problem
from server.web.errors import status_of
from server.web.pages.forms import Form, read_form
from server.web.pages.render import message, page
from server.web.pages.session import check_csrf, signed_in
from server.web.reading import core_of, uuid_of
from storage.flows import WebSession
from storage.repositories import ConnectionRecord, ConnectionStatus

_NOT_YOURS = "This connect link is not valid, has been revoked, or is not yours."
_PROBLEMS: dict[Problem, str] = {
    "access_denied": "You declined the authorization, so nothing was connected.",
    "unknown_state": "This sign-in link is not one Tendril issued. Start again from the connect page.",
    "expired_state": "This authorization took too long and expired. Start again from the connect page.",
    "used_state": "This authorization was already used. Start again from the connect page.",
    "foreign_state": "This authorization was started by another Tendril account. Sign in as that owner.",
    "exchange_failed": "The provider did not accept the authorization. Start again from the connect page.",
    "gone": "This connection can no longer be completed.",
}


class OAuthStartQuery(BaseModel):
    connector: str | None = Field(None, description="The connector's slug.")
    connection: str | None = Field(None, description="The pending connection to complete (its id).")
    selectAccount: str | None = Field(None, description="1 to make the provider show its account picker.")


class CallbackQuery(BaseModel):
    state: str | None = Field(None, description="The state Tendril sent with the authorization request.")
    code: str | None = Field(None, description="The provider's authorization code.")
    error: str | None = Field(None, description="The provider's error, when the person declined.")


async def _own_connection(request: Request, session: WebSession) -> ConnectionRecord:
    """The signed-in owner's connection, or a 404 identical for foreign, unknown and malformed ids."""
    try:
        return await core_of(request).connections.get(session.owner_id, UUID(request.path_params["id"]))
    except (ValueError, DomainError):
        raise NotFound(_NOT_YOURS) from None


def connected_page(request: Request, name: str, connection_id: UUID) -> HTMLResponse:
    event = {"connectionId": str(connection_id), "status": ConnectionStatus.ACTIVE}
    return page(request, "connected.html", f"{name} is connected", event=event)


def _credential_form(
    request: Request,
    record: ConnectionRecord,
    session: WebSession,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    spec = core_of(request).catalog[record.connector_slug].spec
    return page(
        request,
        "connect_form.html",
        f"Connect {spec.name}",
        status,
        name=spec.name,
        connection_id=record.id,
        fields=spec.credential_fields,
        csrf=session.csrf_token,
        error=error,
    )


@signed_in("read")
async def connect_page(request: Request, session: WebSession) -> Response:
    core = core_of(request)
    record = await _own_connection(request, session)
    spec = core.catalog[record.connector_slug].spec
    if record.status == ConnectionStatus.ACTIVE:
        return connected_page(request, spec.name, record.id)
    if record.auth_method == "oauth":
        return page(
            request,
            "connect_oauth.html",
            f"Connect {spec.name}",
            name=spec.name,
            start_url=core.oauth.start_url(record),
            other_account_url=core.oauth.start_url(record, select_account=True),
        )
    return _credential_form(request, record, session)


@signed_in("write")
async def connect_submit(request: Request, session: WebSession) -> Response:
    core = core_of(request)
    record = await _own_connection(request, session)
    spec = core.catalog[record.connector_slug].spec
    form = await read_form(request, Form, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    submitted = form.extra_fields()
    fields = {f.key: submitted[f.key] for f in spec.credential_fields if submitted.get(f.key)}
    try:
        await core.connections.submit_credentials(session.owner_id, record.id, fields)
    except DomainError as error:
        return _credential_form(request, record, session, error.message, status_of(error))
    return connected_page(request, spec.name, record.id)


@signed_in("write", query=OAuthStartQuery)
async def oauth_start(request: Request, session: WebSession) -> Response:
    """Begin an OAuth handshake (a browser page)
    Redirects the signed-in owner's browser to the provider's consent screen."""
    core = core_of(request)
    query: OAuthStartQuery = request.state.query
    connector = core.connections.connector(query.connector)
    connection_id = uuid_of(query.connection, "connection id") if query.connection else None
    url = await core.oauth.begin(
        session.owner_id, connector, connection_id, select_account=query.selectAccount == "1"
    )
    return RedirectResponse(url, status_code=302)


@signed_in("write", query=CallbackQuery)
async def oauth_callback(request: Request, session: WebSession) -> Response:
    """Complete an OAuth handshake (a browser page)
    Where the provider sends the browser back; the page says whether the connection is made and
    tells the other tabs."""
    core = core_of(request)
    query: CallbackQuery = request.state.query
    if not query.state:
        return message(request, "Authorization failed", _PROBLEMS["unknown_state"], 400)
    if query.error:
        await core.oauth.fail(state=query.state, problem="access_denied", signed_in_owner=session.owner_id)
        reason = (
            _PROBLEMS["access_denied"] if query.error == "access_denied" else _PROBLEMS["exchange_failed"]
        )
        return message(request, "Not connected", reason, 400)
    if not query.code:
        return message(request, "Authorization failed", _PROBLEMS["exchange_failed"], 400)
    try:
        completed = await core.oauth.complete(
            signed_in_owner=session.owner_id, state=query.state, code=query.code
        )
    except OAuthProblem as problem:
        return message(request, "Not connected", _PROBLEMS[problem.problem], 400)
    return connected_page(request, completed.connector.spec.name, completed.connection.id)
