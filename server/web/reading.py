"""Reading a request at the HTTP edge, for API routes and pages alike: the core it serves, a
bounded body, JSON or a model parsed from it (a 400 that names the field), path ids, and the
error answer when anything goes wrong."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from server.core import Core
from server.core.errors import Invalid
from server.web.errors import HttpProblem, response_for


def client_of(request: Request) -> str | None:
    """The caller's address, as the server sees it (what failed-key throttling counts by)."""
    return request.client.host if request.client else None


def core_of(request: Request) -> Core:
    return request.app.state.core


async def guarded(request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
    """Run a route body, turning every failure into the API's error shape."""
    try:
        return await work()
    except Exception as exc:
        return response_for(exc, f"{request.method} {request.url.path}")


def uuid_of(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise Invalid(f"malformed {what}: expected a UUID") from None


def invalid_request(model: type[BaseModel], exc: ValidationError) -> Invalid:
    problems = exc.errors()
    unknown = [str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden" and len(p["loc"]) == 1]
    if unknown:
        return Invalid(f"unknown field(s): {', '.join(unknown)}; {getattr(model, 'takes', '')}")
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    top = str(first["loc"][0]) if first["loc"] else ""
    messages: dict[str, str] = getattr(model, "field_messages", {})
    if top in messages:
        return Invalid(messages[top], field=where)
    if first["type"] == "missing":
        return Invalid(f"{where} is required", field=where)
    return Invalid(f"invalid '{where}': {first['msg']}", field=where)


def parse(model: type[BaseModel], data: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(model, exc) from None


async def bounded_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to be larger than `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdecimal():
        raise HttpProblem(400, "Content-Length must be a number of bytes")
    if declared is not None and int(declared) > limit:
        raise HttpProblem(413, f"request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpProblem(413, f"request body is larger than {limit} bytes")
    return bytes(body)


async def json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, refused early when too large or malformed."""
    body = await bounded_body(request, limit)
    if not body.strip():
        return {}
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise HttpProblem(415, "send the request body as application/json")
    try:
        parsed = json.loads(body, parse_constant=_not_json)
        # A lone UTF-16 surrogate ("\ud800") parses but can be neither stored nor echoed back.
        json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise Invalid("request body contains an unpaired UTF-16 surrogate escape") from None
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        # Undecodable bytes, NaN/Infinity, integers too long to convert, absurd nesting.
        raise Invalid(f"request body is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(parsed, dict):
        raise Invalid("request body must be a JSON object")
    return parsed


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # Python's json accepts NaN and Infinity; JSON does not
