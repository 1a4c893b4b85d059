"""The pages people open in a browser: sign-in, dashboard, connect, OAuth start and callback.

Small and plain: server-rendered HTML, a few lines of script, no build step. Every page that
touches a connection requires a signed-in owner and checks that the connection is theirs.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server.errors import ApiError
from server.hub import Hub, parse_uuid
from server.oauth_connections import OAuthProblem
from server.web._http import guarded, hub_of
from server.web.session import (
    check_csrf,
    current_session,
    end_session,
    safe_next,
    sign_in_redirect,
    start_session,
)
from storage.flows import WebSession
from storage.repositories import ConnectionRecord

CHANNEL = "tendril-connections"  # BroadcastChannel name and localStorage key shared by the pages

_STYLE = """body{font:16px system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#222}
label{display:block;margin:.8rem 0 .2rem}input,select{width:100%;padding:.4rem;box-sizing:border-box}
button,.button{margin-top:1rem;padding:.5rem 1rem;display:inline-block}
table{border-collapse:collapse;width:100%}td,th{padding:.4rem;border-bottom:1px solid #ddd;text-align:left}
.error{color:#a00}.status-active{color:#070}"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title} - Tendril</title><style>{style}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""

_ANNOUNCE = """<script>
(() => {{
  const event = {event};
  try {{ new BroadcastChannel("{channel}").postMessage(event); }} catch (e) {{}}
  try {{ localStorage.setItem("{channel}", JSON.stringify({{...event, at: Date.now()}})); }} catch (e) {{}}
}})();
</script>"""

_DASHBOARD_SCRIPT = """<script>
(() => {
  const render = (rows) => {
    for (const row of rows) {
      const cell = document.querySelector(`[data-status="${row.id}"]`);
      if (cell) { cell.textContent = row.status; cell.className = "status-" + row.status; }
      const action = document.querySelector(`[data-connect="${row.id}"]`);
      if (action && row.status === "active") { action.remove(); }
    }
  };
  const refresh = async () => {
    const response = await fetch("/dashboard/connections.json", {credentials: "same-origin"});
    if (response.ok) { render(await response.json()); }
  };
  try { new BroadcastChannel("CHANNEL").onmessage = refresh; } catch (e) {}
  window.addEventListener("storage", (e) => { if (e.key === "CHANNEL") { refresh(); } });
  setInterval(refresh, 3000);
})();
</script>"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), style=_STYLE, body=body),
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",  # forms keep their Origin header (the CSRF check reads it)
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; "
            "style-src 'unsafe-inline'; frame-ancestors 'none'",
        },
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


SessionPage = Callable[[Request, WebSession], Awaitable[Response]]


def signed_in(handler: SessionPage) -> Callable[[Request], Awaitable[Response]]:
    """A page for a signed-in owner; others are sent to sign in and brought back."""

    async def route(request: Request) -> Response:
        async def call() -> Response:
            session = await current_session(request)
            if session is None:
                return sign_in_redirect(request)
            try:
                return await handler(request, session)
            except ApiError as error:
                return page("Something went wrong", f'<p class="error">{_e(error.message)}</p>', error.status)

        return await guarded(request, call)

    route.__name__ = handler.__name__
    return route


# -- sign-in -------------------------------------------------------------------------------------
async def signin_form(request: Request, error: str | None = None, status: int = 200) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    message = f'<p class="error">{_e(error)}</p>' if error else ""
    body = (
        f"{message}<p>Sign in with one of your Tendril API keys.</p>"
        f'<form method="post" action="/signin?next={quote(next_path, safe="")}">'
        '<label for="api_key">API key</label>'
        '<input id="api_key" name="api_key" type="password" autocomplete="off" required>'
        '<button type="submit">Sign in</button></form>'
    )
    return page("Sign in", body, status)


async def signin(request: Request) -> Response:
    async def call() -> Response:
        if request.method == "GET":
            return await signin_form(request)
        form = await request.form()
        key = form.get("api_key")
        try:
            principal = await hub_of(request).authenticate_owner(key if isinstance(key, str) else None)
        except ApiError:
            return await signin_form(request, "That API key is not valid.", 401)
        response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        await start_session(request, principal.owner_id, response)
        return response

    return await guarded(request, call)


async def signout(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    await end_session(request, response)
    return response


# -- dashboard -------------------------------------------------------------------------------------
def _row(hub: Hub, record: ConnectionRecord, csrf: str) -> str:
    name = hub.catalog[record.connector_slug].spec.name if record.connector_slug in hub.catalog else "?"
    connect = (
        f'<a class="button" data-connect="{_e(record.id)}" href="/connect/{_e(record.id)}" '
        f'target="_blank" rel="opener">Connect</a>'
        if record.status != "active"
        else ""
    )
    revoke = (
        f'<form method="post" action="/dashboard/connections/{_e(record.id)}/revoke" style="display:inline">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}"><button type="submit">Revoke</button></form>'
    )
    return (
        f"<tr><td>{_e(record.label)}</td><td>{_e(name)}</td>"
        f'<td data-status="{_e(record.id)}" class="status-{_e(record.status)}">{_e(record.status)}</td>'
        f"<td>{connect} {revoke}</td></tr>"
    )


@signed_in
async def dashboard(request: Request, session: WebSession) -> Response:
    hub = hub_of(request)
    records = await hub.store.list_connections(session.owner_id)
    rows = "".join(_row(hub, record, session.csrf_token) for record in records)
    options = "".join(
        f'<option value="{_e(slug)}">{_e(connector.spec.name)}</option>'
        for slug, connector in hub.catalog.items()
        if hub.is_configured(connector)
    )
    body = (
        '<table id="connections"><tr><th>Label</th><th>Connector</th><th>Status</th><th></th></tr>'
        f"{rows}</table>"
        '<form method="post" action="/dashboard/connections"><label for="connector">New connection</label>'
        f'<select id="connector" name="connector">{options}</select>'
        f'<input type="hidden" name="csrf" value="{_e(session.csrf_token)}">'
        '<button type="submit">Add</button></form>'
        '<form method="post" action="/signout"><button type="submit">Sign out</button></form>'
        + _DASHBOARD_SCRIPT.replace("CHANNEL", CHANNEL)
    )
    return page("Connections", body)


@signed_in
async def dashboard_connections(request: Request, session: WebSession) -> Response:
    records = await hub_of(request).store.list_connections(session.owner_id)
    return JSONResponse([{"id": str(r.id), "status": r.status, "label": r.label} for r in records])


@signed_in
async def dashboard_add(request: Request, session: WebSession) -> Response:
    hub = hub_of(request)
    form = await request.form()
    check_csrf(request, session, form.get("csrf"))
    await hub.start_connection(session.owner_id, hub.connector(form.get("connector")), None)
    return RedirectResponse("/dashboard", status_code=303)


@signed_in
async def dashboard_revoke(request: Request, session: WebSession) -> Response:
    form = await request.form()
    check_csrf(request, session, form.get("csrf"))
    await hub_of(request).revoke_connection(session.owner_id, request.path_params["id"])
    return RedirectResponse("/dashboard", status_code=303)


# -- connect ---------------------------------------------------------------------------------------
async def _own_connection(request: Request, session: WebSession) -> ConnectionRecord:
    """The signed-in owner's connection, or a 404 identical for foreign and unknown ids."""
    try:
        return await hub_of(request).get_connection(session.owner_id, request.path_params["id"])
    except ApiError:
        raise ApiError(404, "This connect link is not valid, has been revoked, or is not yours.") from None


def connected_page(name: str, connection_id: str) -> HTMLResponse:
    announce = _ANNOUNCE.format(
        channel=CHANNEL, event=json.dumps({"connectionId": connection_id, "status": "active"})
    )
    return page(
        f"{name} is connected", "<p>Done. You can close this tab and go back to your chat.</p>" + announce
    )


def _credential_form(hub: Hub, record: ConnectionRecord, session: WebSession, error: str | None) -> str:
    spec = hub.catalog[record.connector_slug].spec
    fields = "".join(
        f'<label for="{_e(f.key)}">{_e(f.label)}</label>'
        f'<input id="{_e(f.key)}" name="{_e(f.key)}" type="{"password" if f.secret else "text"}" '
        f'autocomplete="off" placeholder="{_e(f.placeholder or "")}" {"required" if f.required else ""}>'
        for f in spec.credential_fields
    )
    message = f'<p class="error">{_e(error)}</p>' if error else ""
    return (
        f"{message}<p>Connect <b>{_e(spec.name)}</b> so your agent can use it. "
        "The credential goes to Tendril only, never into the chat.</p>"
        f'<form method="post" action="/connect/{_e(record.id)}">{fields}'
        f'<input type="hidden" name="csrf" value="{_e(session.csrf_token)}">'
        "<button type=submit>Connect</button></form>"
    )


@signed_in
async def connect_page(request: Request, session: WebSession) -> Response:
    hub = hub_of(request)
    record = await _own_connection(request, session)
    spec = hub.catalog[record.connector_slug].spec
    if record.status == "active":
        return connected_page(spec.name, str(record.id))
    if record.auth_method == "oauth":
        start = hub.oauth.start_url(record)
        body = (
            f"<p>Tendril will send you to <b>{_e(spec.name)}</b> to approve access, then bring you back.</p>"
            f'<a class="button" id="continue" href="{_e(start)}">Continue to {_e(spec.name)}</a> '
            f'<a href="{_e(hub.oauth.start_url(record, select_account=True))}">Use another account</a>'
        )
        return page(f"Connect {spec.name}", body)
    return page(f"Connect {spec.name}", _credential_form(hub, record, session, None))


@signed_in
async def connect_submit(request: Request, session: WebSession) -> Response:
    hub = hub_of(request)
    record = await _own_connection(request, session)
    spec = hub.catalog[record.connector_slug].spec
    form = await request.form()
    check_csrf(request, session, form.get("csrf"))
    fields = {f.key: form.get(f.key) for f in spec.credential_fields if form.get(f.key)}
    try:
        await hub.submit_credentials(session.owner_id, str(record.id), fields)
    except ApiError as error:
        return page(
            f"Connect {spec.name}", _credential_form(hub, record, session, error.message), error.status
        )
    return connected_page(spec.name, str(record.id))


# -- OAuth start and callback ----------------------------------------------------------------------
@signed_in
async def oauth_start(request: Request, session: WebSession) -> Response:
    hub = hub_of(request)
    query = request.query_params
    connector = hub.connector(query.get("connector"))
    if query.get("connection"):
        record = await _own_connection_by_id(hub, session, query["connection"])
        if record.connector_slug != connector.slug:
            raise ApiError(400, "that connection belongs to another connector")
    else:
        record, _ = await hub.start_connection(session.owner_id, connector, None)
    if hub.oauth.provider(connector) is None:
        raise ApiError(400, f"{connector.spec.name} has no OAuth client configured")
    url = await hub.oauth.authorization_url(record, select_account=query.get("selectAccount") == "1")
    return RedirectResponse(url, status_code=302)


async def _own_connection_by_id(hub: Hub, session: WebSession, connection_id: str) -> ConnectionRecord:
    record = await hub.store.get_connection(session.owner_id, parse_uuid(connection_id, "connection id"))
    if record is None:
        raise ApiError(404, "This connection does not exist or is not yours.")
    return record


_PROBLEMS = {
    "access_denied": "You declined the authorization, so nothing was connected.",
    "unknown_state": "This sign-in link is not one Tendril issued. Start again from the connect page.",
    "expired_state": "This authorization took too long and expired. Start again from the connect page.",
    "used_state": "This authorization was already used. Start again from the connect page.",
    "foreign_state": "This authorization was started by another Tendril account. Sign in as that owner.",
    "exchange_failed": "The provider did not accept the authorization. Start again from the connect page.",
    "gone": "This connection can no longer be completed.",
}


@signed_in
async def oauth_callback(request: Request, session: WebSession) -> Response:
    hub = hub_of(request)
    query = request.query_params
    state, code, error = query.get("state"), query.get("code"), query.get("error")
    if not state:
        return page("Authorization failed", f'<p class="error">{_e(_PROBLEMS["unknown_state"])}</p>', 400)
    if error:
        await hub.oauth.fail(state=state, problem="access_denied")
        reason = _PROBLEMS["access_denied"] if error == "access_denied" else _PROBLEMS["exchange_failed"]
        return page("Not connected", f'<p class="error">{_e(reason)}</p>', 400)
    if not code:
        return page("Authorization failed", f'<p class="error">{_e(_PROBLEMS["exchange_failed"])}</p>', 400)
    try:
        completed = await hub.oauth.complete(signed_in_owner=session.owner_id, state=state, code=code)
    except OAuthProblem as problem:
        return page("Not connected", f'<p class="error">{_e(_PROBLEMS[problem.problem])}</p>', 400)
    return connected_page(completed.connector.spec.name, str(completed.connection.id))


def page_routes() -> list[BaseRoute]:
    return [
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/dashboard/connections.json", dashboard_connections, methods=["GET"]),
        Route("/dashboard/connections", dashboard_add, methods=["POST"]),
        Route("/dashboard/connections/{id}/revoke", dashboard_revoke, methods=["POST"]),
        Route("/connect/{id}", connect_page, methods=["GET"]),
        Route("/connect/{id}", connect_submit, methods=["POST"]),
        Route("/api/v1/connections/oauth/start", oauth_start, methods=["GET"]),
        Route("/api/v1/connections/oauth/callback", oauth_callback, methods=["GET"]),
    ]
