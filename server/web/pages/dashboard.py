"""The owner's dashboard: their connections, with Connect and Revoke, and a form to add one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from auth import api_keys
from server.web.pages.forms import Form, read_form
from server.web.pages.render import page
from server.web.pages.session import check_csrf, signed_in
from server.web.reading import core_of, uuid_of
from storage.flows import WebSession


class AddConnectionForm(Form):
    connector: str | None = None


@signed_in("read")
async def dashboard(request: Request, session: WebSession) -> Response:
    core = core_of(request)
    records = await core.connections.list(session.owner_id)
    rows = [
        {
            "id": record.id,
            "label": record.label,
            "connector": core.catalog[record.connector_slug].spec.name
            if record.connector_slug in core.catalog
            else "?",
            "status": record.status,
        }
        for record in records
    ]
    connectors = [
        (slug, connector.spec.name)
        for slug, connector in core.catalog.items()
        if core.connections.is_configured(connector)
    ]
    return page(
        request,
        "dashboard.html",
        "Connections",
        rows=rows,
        connectors=connectors,
        csrf=session.csrf_token,
        can_admin=api_keys.grants(session.permissions, "admin"),
    )


@signed_in("read")
async def dashboard_connections(request: Request, session: WebSession) -> Response:
    records = await core_of(request).connections.list(session.owner_id)
    return JSONResponse([{"id": str(r.id), "status": r.status, "label": r.label} for r in records])


@signed_in("write")
async def dashboard_add(request: Request, session: WebSession) -> Response:
    core = core_of(request)
    form = await read_form(request, AddConnectionForm, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    await core.connections.start(session.owner_id, core.connections.connector(form.connector))
    return RedirectResponse("/dashboard", status_code=303)


@signed_in("write")
async def dashboard_revoke(request: Request, session: WebSession) -> Response:
    core = core_of(request)
    form = await read_form(request, Form, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    await core.connections.revoke(session.owner_id, uuid_of(request.path_params["id"], "connection id"))
    return RedirectResponse("/dashboard", status_code=303)
