"""What machines ask a replica: is the process up (/healthz), should it get traffic (/readyz), and
its Prometheus metrics (/metrics).

/healthz answers from the process alone, so a slow database never gets a live replica restarted.
/readyz answers 200 only while the database answers and its schema is this code's (see
server/core/readiness.py), 503 with the reason otherwise. /metrics is there only when
TENDRIL_METRICS_TOKEN is set (404 otherwise), for a scraper presenting it as a Bearer token; each
replica shows its own figures, so Prometheus scrapes each replica's address.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.web.api.endpoint import presented_key
from server.web.errors import HttpProblem, response_for
from server.web.reading import client_of, core_of, guarded

METRICS_PATH = "/metrics"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    problem = await core_of(request).readiness.problem()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    core = core_of(request)
    expected = core.settings.metrics_token
    if expected is None:
        return response_for(HttpProblem(404, "no route GET /metrics"), "GET /metrics")

    async def work() -> Response:
        client = client_of(request)
        core.identity.throttle.check(client)  # a 429 while this client has guessed too often
        presented = presented_key(request) or ""
        if not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
            core.identity.throttle.failed(client, None, "metrics token")
            raise HttpProblem(
                401, "present the metrics token as a Bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        return Response(await core.metrics.exposition(), media_type=core.metrics.CONTENT_TYPE)

    return await guarded(request, work)


def probe_routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route(METRICS_PATH, metrics, methods=["GET"]),
    ]
