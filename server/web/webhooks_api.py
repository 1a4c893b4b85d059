"""REST for provider webhooks: endpoint setup and the job views behind /admin/connector-events
(the receiver is server.web.webhook_ingress)."""

from __future__ import annotations

from secrets import token_urlsafe
from urllib.parse import urlsplit
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.errors import ApiError
from server.hub import OwnerPrincipal, parse_uuid
from server.push import delivery_secret_key
from server.web._http import endpoint, hub_of, json_object
from server.webhooks import render_endpoint, render_job
from storage.jobs import JobStatus


@endpoint("write")
async def set_up_webhook(request: Request, principal: OwnerPrincipal) -> Response:
    service = hub_of(request).webhooks
    body = await json_object(request)
    connection_id = parse_uuid(request.path_params["connection_id"], "connection id")
    created, setup = await service.setup(
        principal.owner_id,
        connection_id,
        provider=body.get("provider"),
        secrets=body.get("secrets"),
        agents=body.get("agents"),
        register=body.get("register"),
    )
    return JSONResponse(
        {"endpoint": render_endpoint(created, service.url_for(created)), "setup": setup}, status_code=201
    )


@endpoint("read")
async def list_webhook_endpoints(request: Request, principal: OwnerPrincipal) -> Response:
    service = hub_of(request).webhooks
    found = await service.hooks.list_endpoints(principal.owner_id)
    return JSONResponse({"endpoints": [render_endpoint(e, service.url_for(e)) for e in found]})


@endpoint("write")
async def delete_webhook_endpoint(request: Request, principal: OwnerPrincipal) -> Response:
    service = hub_of(request).webhooks
    endpoint_id = parse_uuid(request.path_params["endpoint_id"], "endpoint id")
    deleted, at_provider = await service.delete(principal.owner_id, endpoint_id)
    return JSONResponse(
        {"endpoint": render_endpoint(deleted, service.url_for(deleted)), "provider": at_provider}
    )


@endpoint("read")
async def list_jobs(request: Request, principal: OwnerPrincipal) -> Response:
    service = hub_of(request).webhooks
    status = request.query_params.get("status") or None
    if status is not None and status not in JobStatus.ALL:
        raise ApiError(400, f"status must be one of {', '.join(JobStatus.ALL)}")
    agent = request.query_params.get("agent")
    jobs = await service.jobs.list(
        principal.owner_id,
        status=status,
        agent_id=parse_uuid(agent, "agent id") if agent else None,
        event_key=request.query_params.get("eventKey") or None,
    )
    counts = await service.jobs.count_by_status(principal.owner_id)
    return JSONResponse({"jobs": [render_job(j) for j in jobs], "counts": counts})


@endpoint("write")
async def retry_job(request: Request, principal: OwnerPrincipal) -> Response:
    service = hub_of(request).webhooks
    job_id: UUID = parse_uuid(request.path_params["job_id"], "job id")
    revived = await service.jobs.retry_dead(job_id, owner_id=principal.owner_id)
    if revived is None:
        if await service.jobs.get(job_id, owner_id=principal.owner_id) is None:
            raise ApiError(404, "job not found")
        raise ApiError(409, "only dead or failed jobs can be retried")
    await service.announce_jobs([revived.agent_id])
    return JSONResponse({"job": render_job(revived)})


@endpoint("write")
async def set_agent_delivery(request: Request, principal: OwnerPrincipal) -> Response:
    """PUT {url, secret?}: push this agent's jobs to `url`, signed with `secret` (generated when
    not given, and then shown only in this answer). DELETE: back to pulling over MCP."""
    hub = hub_of(request)
    agent_id = parse_uuid(request.path_params["agent_id"], "agent id")
    if request.method == "DELETE":
        if not await hub.store.set_agent_delivery(principal.owner_id, agent_id, url=None, sealed_secret=None):
            raise ApiError(404, "agent not found")
        return JSONResponse({"deliveryUrl": None})
    body = await json_object(request)
    url, secret = body.get("url"), body.get("secret")
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).hostname
    ):
        raise ApiError(400, "url must be an absolute http(s) URL")
    if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
        raise ApiError(400, "secret must be a string of at least 16 characters")
    generated = secret is None
    secret = secret or token_urlsafe(32)
    sealed = hub.vault.seal(delivery_secret_key(agent_id), {"secret": secret})
    if not await hub.store.set_agent_delivery(principal.owner_id, agent_id, url=url, sealed_secret=sealed):
        raise ApiError(404, "agent not found")
    answer: dict[str, object] = {"deliveryUrl": url}
    if generated:
        answer["deliverySecret"] = secret
    return JSONResponse(answer)


def webhook_routes() -> list[Route]:
    return [  # the receiver itself is server.web.webhook_ingress, in front of the router
        Route("/api/v1/connections/{connection_id}/webhooks", set_up_webhook, methods=["POST"]),
        Route("/api/v1/webhook-endpoints", list_webhook_endpoints, methods=["GET"]),
        Route("/api/v1/webhook-endpoints/{endpoint_id}", delete_webhook_endpoint, methods=["DELETE"]),
        Route("/api/v1/jobs", list_jobs, methods=["GET"]),
        Route("/api/v1/jobs/{job_id}/retry", retry_job, methods=["POST"]),
        Route("/api/v1/agents/{agent_id}/delivery", set_agent_delivery, methods=["PUT", "DELETE"]),
    ]
