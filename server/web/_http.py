"""Request plumbing shared by every REST route: auth, bounded JSON bodies, error rendering."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth.api_keys import Permission
from connectors.errors import ConnectorError
from server.errors import ApiError, api_error_from_connector, error_response, internal_error_response
from server.hub import Hub, OwnerPrincipal

Handler = Callable[[Request, OwnerPrincipal], Awaitable[Response]]


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip() or None


async def guarded(request: Request, call: Callable[[], Awaitable[Response]]) -> Response:
    """Run a route body, turning every failure into the API's error shape."""
    try:
        return await call()
    except ApiError as error:
        return error_response(error)
    except ConnectorError as error:
        return error_response(api_error_from_connector(error))
    except Exception as exc:
        return internal_error_response(exc, f"{request.method} {request.url.path}")


def endpoint(permission: Permission) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """An owner-authenticated route needing `permission`."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            async def call() -> Response:
                principal = await hub_of(request).authenticate_owner(presented_key(request))
                principal.require(permission)
                return await handler(request, principal)

            return await guarded(request, call)

        route.__name__ = handler.__name__
        return route

    return wrap


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, refused early when too large or malformed."""
    limit: int = hub_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise ApiError(400, "Content-Length must be a number of bytes")
    if declared is not None and int(declared) > limit:
        raise ApiError(413, f"request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
    if not body.strip():
        return {}
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise ApiError(415, "send the request body as application/json")
    try:
        parsed = json.loads(body, parse_constant=_not_json)
        # A lone UTF-16 surrogate ("\ud800") parses but can be neither stored nor echoed back.
        json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ApiError(400, "request body contains an unpaired UTF-16 surrogate escape") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        # Undecodable bytes, NaN/Infinity, integers too long to convert, absurd nesting.
        raise ApiError(400, f"request body is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "request body must be a JSON object")
    return parsed


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # Python's json accepts NaN and Infinity; JSON does not


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string")
    return value
