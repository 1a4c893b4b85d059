"""/admin/connector-events: the signed-in owner's webhook endpoints, delivery counts, normalised
event keys, durable job states and dead letters (with a retry button), and a delete button per
endpoint. Only that owner's data."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server.core.errors import DomainError, NotFound
from server.web.pages.forms import Form, read_form
from server.web.pages.render import page
from server.web.pages.session import check_csrf, signed_in
from server.web.reading import core_of, parse, uuid_of
from storage.flows import WebSession
from storage.jobs import JobStatus

PATH = "/admin/connector-events"


class EventsQuery(BaseModel):
    status: str | None = None


@signed_in("read")
async def connector_events(request: Request, session: WebSession) -> Response:
    core = core_of(request)
    query: EventsQuery = parse(EventsQuery, dict(request.query_params))
    wanted = query.status or None
    jobs = await core.jobs.list(session.owner_id, status=wanted, limit=200)  # refuses an unknown status
    endpoints = await core.webhooks.list(session.owner_id)
    return page(
        request,
        "connector_events.html",
        "Connector events",
        path=PATH,
        csrf=session.csrf_token,
        endpoints=[{"record": e, "url": core.webhooks.url_for(e)} for e in endpoints],
        statuses=JobStatus.ALL,
        counts=await core.jobs.counts(session.owner_id),
        wanted=wanted,
        jobs=jobs,
        dead=await core.jobs.list(session.owner_id, status=JobStatus.DEAD, limit=200),
        agents={a.id: a.name for a in await core.identity.list_agents(session.owner_id)},
    )


@signed_in("write")
async def retry_dead_letter(request: Request, session: WebSession) -> Response:
    core = core_of(request)
    form = await read_form(request, Form, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    job_id = uuid_of(request.path_params["job_id"], "job id")
    try:
        await core.jobs.retry(session.owner_id, job_id)
    except DomainError:
        raise NotFound("That job is not a dead letter of yours.") from None
    return RedirectResponse(PATH, status_code=303)


@signed_in("write")
async def delete_endpoint(request: Request, session: WebSession) -> Response:
    """Retire an endpoint (and its hook at the provider, where Tendril made it); says what happened."""
    core = core_of(request)
    form = await read_form(request, Form, core.settings.max_body_bytes)
    check_csrf(request, session, form.csrf)
    endpoint_id = uuid_of(request.path_params["endpoint_id"], "endpoint id")
    deleted, removal = await core.webhooks.delete(session.owner_id, endpoint_id)
    return page(
        request,
        "endpoint_deleted.html",
        "Endpoint deleted",
        path=PATH,
        provider=deleted.provider,
        url=core.webhooks.url_for(deleted),
        how=removal.how,
    )
