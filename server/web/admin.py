"""/admin/connector-events: the signed-in owner's webhook endpoints, delivery counts, normalised
event keys, durable job states and dead letters (with a retry button), and a delete button per
endpoint. Only that owner's data."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server.errors import ApiError
from server.hub import parse_uuid
from server.web._http import hub_of
from server.web.pages import _e, page, signed_in
from server.web.session import WebSession, check_csrf
from storage.jobs import JobStatus

PATH = "/admin/connector-events"


def _when(value: object) -> str:
    return _e(str(value)[:19].replace("T", " ")) if value else "-"


@signed_in
async def connector_events(request: Request, session: WebSession) -> Response:
    service = hub_of(request).webhooks
    wanted = request.query_params.get("status") or None
    if wanted is not None and wanted not in JobStatus.ALL:
        raise ApiError(400, f"status must be one of {', '.join(JobStatus.ALL)}")
    endpoints = await service.hooks.list_endpoints(session.owner_id)
    counts = await service.jobs.count_by_status(session.owner_id)
    jobs = await service.jobs.list(session.owner_id, status=wanted, limit=200)
    dead = await service.jobs.list(session.owner_id, status=JobStatus.DEAD, limit=200)
    agents = {a.id: a.name for a in await hub_of(request).store.list_agents(session.owner_id)}

    endpoint_rows = "".join(
        f'<tr data-endpoint="{_e(e.id)}"><td>{_e(e.provider)}</td>'
        f"<td><code>{_e(service.url_for(e))}</code></td><td>{_e(e.status)}</td>"
        f'<td class="deliveries">{e.delivery_count}</td><td>{e.duplicate_count}</td>'
        f"<td>{e.rejected_count}</td><td>{_when(e.last_delivery_at)}</td>"
        f"<td>{_e(e.last_error or '-')}</td><td>"
        f'<form method="post" action="{PATH}/endpoints/{_e(e.id)}/delete">'
        f'<input type="hidden" name="csrf" value="{_e(session.csrf_token)}">'
        '<button type="submit">Delete</button></form></td></tr>'
        for e in endpoints
    )
    count_cells = "".join(
        f'<li><a href="{PATH}?status={s}">{s}</a>: <span data-count="{s}">{counts.get(s, 0)}</span></li>'
        for s in JobStatus.ALL
    )
    job_rows = "".join(
        f'<tr data-job="{_e(j.id)}"><td>{_e(j.event_key)}</td>'
        f"<td>{_e(agents.get(j.agent_id, j.agent_id))}</td>"
        f'<td class="status-{_e(j.status)}">{_e(j.status)}</td><td>{j.attempts}/{j.max_attempts}</td>'
        f"<td>{_when(j.created_at)}</td><td>{_e(j.last_error or '-')}</td></tr>"
        for j in jobs
    )
    dead_rows = "".join(
        f'<tr data-dead="{_e(j.id)}"><td>{_e(j.event_key)}</td>'
        f"<td>{_e(agents.get(j.agent_id, j.agent_id))}</td>"
        f"<td>{_e(j.last_error or '-')}</td><td>"
        f'<form method="post" action="{PATH}/jobs/{_e(j.id)}/retry">'
        f'<input type="hidden" name="csrf" value="{_e(session.csrf_token)}">'
        '<button type="submit">Retry</button></form></td></tr>'
        for j in dead
    )
    body = (
        "<h2>Webhook endpoints</h2>"
        '<table id="endpoints"><tr><th>Provider</th><th>Receiver URL</th><th>Status</th>'
        "<th>Deliveries</th><th>Duplicates</th><th>Refused</th><th>Last delivery</th><th>Last error</th>"
        "<th></th></tr>"
        f"{endpoint_rows}</table>"
        f'<h2>Jobs</h2><ul id="job-counts">{count_cells}</ul>'
        f'<p><a href="{PATH}">all</a>{" (showing " + _e(wanted) + ")" if wanted else ""}</p>'
        '<table id="jobs"><tr><th>Event</th><th>Agent</th><th>Status</th><th>Attempts</th>'
        f"<th>Created</th><th>Last error</th></tr>{job_rows}</table>"
        '<h2>Dead letters</h2><table id="dead-letters">'
        f"<tr><th>Event</th><th>Agent</th><th>Last error</th><th></th></tr>{dead_rows}</table>"
    )
    return page("Connector events", body)


@signed_in
async def retry_dead_letter(request: Request, session: WebSession) -> Response:
    form = await request.form()
    check_csrf(request, session, form.get("csrf"))
    service = hub_of(request).webhooks
    job_id = parse_uuid(request.path_params["job_id"], "job id")
    revived = await service.jobs.retry_dead(job_id, owner_id=session.owner_id)
    if revived is None:
        raise ApiError(404, "That job is not a dead letter of yours.")
    await service.announce_jobs([revived.agent_id])
    return RedirectResponse(PATH, status_code=303)


@signed_in
async def delete_endpoint(request: Request, session: WebSession) -> Response:
    """Retire an endpoint (and its hook at the provider, where Tendril made it); says what happened."""
    form = await request.form()
    check_csrf(request, session, form.get("csrf"))
    service = hub_of(request).webhooks
    endpoint_id = parse_uuid(request.path_params["endpoint_id"], "endpoint id")
    deleted, at_provider = await service.delete(session.owner_id, endpoint_id)
    body = (
        f'<p id="deleted">Deleted the {_e(deleted.provider)} endpoint '
        f"<code>{_e(service.url_for(deleted))}</code>.</p>"
        f'<p id="at-provider">{_e(at_provider["how"][:1].upper() + at_provider["how"][1:])}.</p>'
        f'<p><a href="{PATH}">Back to connector events</a></p>'
    )
    return page("Endpoint deleted", body)


def admin_routes() -> list[BaseRoute]:
    return [
        Route(PATH, connector_events, methods=["GET"]),
        Route(PATH + "/jobs/{job_id}/retry", retry_dead_letter, methods=["POST"]),
        Route(PATH + "/endpoints/{endpoint_id}/delete", delete_endpoint, methods=["POST"]),
    ]
