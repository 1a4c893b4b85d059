"""A small HTTP API for the generic HTTP connector: auth checks, echo, redirects, big bodies.

Everything under `/api/` needs one of the accepted credentials (an exact Authorization value,
or a key in the configured API key header); a missing or wrong one gets 401 like most APIs.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class FakeUpstream:
    def __init__(self, *, api_key_header: str = "X-Api-Key") -> None:
        self.accepted_authorization: set[str] = set()
        self.accepted_keys: set[str] = set()
        self.api_key_header = api_key_header
        self.open = False  # True: no credential needed
        self.calls: list[Call] = []
        self._faults: deque[Response] = deque()
        self._lock = threading.Lock()

    # --- test controls -------------------------------------------------------
    def rate_limit_next(self, retry_after: int = 1) -> None:
        self._faults.append(
            JSONResponse(
                {"error": "rate_limited"}, status_code=429, headers={"Retry-After": str(retry_after)}
            )
        )

    # --- HTTP ----------------------------------------------------------------
    @cached_property
    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
        return Starlette(routes=[Route("/api/{rest:path}", self._endpoint, methods=methods)])

    def _authorized(self, request: Request) -> bool:
        return (
            self.open
            or request.headers.get("authorization") in self.accepted_authorization
            or request.headers.get(self.api_key_header) in self.accepted_keys
        )

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        call = Call(request.method, request.url.path, request.url.query, dict(request.headers), body)
        with self._lock:
            self.calls.append(call)
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            return fault
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return self._route(request.path_params["rest"], request, call)

    def _route(self, rest: str, request: Request, call: Call) -> Response:
        query = request.query_params
        if rest in ("", "echo"):
            echoed: dict[str, Any] = {
                "method": call.method,
                "path": call.path,
                "query": call.query,
                "headers": call.headers,  # the credential too: real echo services do this
                "body": call.body.decode(errors="replace"),
            }
            return JSONResponse(echoed)
        if rest == "escaped":  # the credential echoed in JSON that escapes its slashes, as some encoders do
            escaped = json.dumps({"authorization": call.headers.get("authorization")}).replace("/", "\\/")
            return Response(escaped, media_type="application/json")
        if rest == "redirect":
            return RedirectResponse(query["to"], status_code=int(query.get("status", "302")))
        if rest == "text":
            return PlainTextResponse(query.get("say", "hello"))
        if rest == "big":
            return PlainTextResponse("x" * int(query["size"]))
        if rest == "binary":
            return Response(bytes(range(256)), media_type="application/octet-stream")
        if rest.startswith("status/"):
            return JSONResponse({"status": int(rest[7:])}, status_code=int(rest[7:]))
        return JSONResponse({"error": "not_found"}, status_code=404)
