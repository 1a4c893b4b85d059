"""What every REST route shares: the API key and its permission, path ids, the body and query
string parsed into the route's pydantic models, and the answer rendered from its response model.

A route declares all of it (`@api("write", body=..., query=..., response=..., ids=...)`), so the
declaration is also what describes the route (permission, models, statuses) to whoever reads it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from auth.api_keys import Permission
from server.core import Core
from server.core.audit import Actor, acting_as
from server.core.errors import Unauthenticated
from server.core.identity import OwnerPrincipal
from server.core.throttle import Throttled
from server.logs import note_key
from server.web.quotas import Window
from server.web.reading import client_of, core_of, guarded, json_object, parse, uuid_of

M = TypeVar("M", bound=BaseModel)

# What a route that calls a provider can fail with beyond the usual: the provider has no such
# thing (404), the connection is not connected (409), the provider failed (502) or was too slow (504).
PROVIDER_ERRORS = (404, 409, 502, 504)


class RequestModel(BaseModel):
    """A request body or query string. A value of the wrong shape is a 400 naming the field; a
    model may say what to answer for a field (`field_messages`) in the words its users know."""

    model_config = ConfigDict(extra="ignore", populate_by_name=False)
    field_messages: ClassVar[dict[str, str]] = {}
    # Set with extra="forbid": what the route takes, said after the unknown fields' names.
    takes: ClassVar[str] = ""


class ApiRequest(RequestModel):
    """A body of Tendril's own API: camelCase on the wire."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=False)


def examples(*bodies: dict[str, Any]) -> ConfigDict:
    """A request model's examples (the bodies users of such APIs already send), for the OpenAPI document."""
    return ConfigDict(json_schema_extra={"examples": list(bodies)})


class ApiResponse(BaseModel):
    """An answer of Tendril's own API: camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class Deleted(ApiResponse):
    deleted: bool = Field(description="Always true.")


@dataclass(frozen=True, slots=True)
class Answer(Generic[M]):
    """A response model with a status other than 200, or extra headers."""

    body: M
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip() or None


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated API request, as a route handler sees it."""

    request: Request
    core: Core
    principal: OwnerPrincipal
    ids: dict[str, UUID]
    body: Any
    query: Any

    @property
    def owner_id(self) -> UUID:
        return self.principal.owner_id


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """What a route declares: the permission it needs, the models it reads and answers, and what
    else it can answer. The OpenAPI document is made from these (server/web/api/openapi.py)."""

    permission: Permission
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    ids: dict[str, str]
    # Its other path parameters (`{"connector": "The connector's slug."}`), all strings.
    path: dict[str, str] = field(default_factory=dict)
    # A regular expression a path parameter must match, where one does.
    patterns: dict[str, str] = field(default_factory=dict)
    # Success statuses, the first being the usual one.
    success: tuple[int, ...] = (200,)
    # Failure statuses beyond the ones every route of its kind answers (see openapi.py).
    errors: tuple[int, ...] = ()
    # Error shapes other than the API's own that the route answers with (Alloy's, for its route).
    error_models: tuple[type[BaseModel], ...] = ()
    # The body is the raw content (an upload), not JSON.
    upload: bool = False
    # For a route that makes something: where the new thing's id is in the answer (a JSON pointer,
    # "/connection/id"). The document links it to the routes under `<collection>/{...}`, the
    # collection being the route's own path unless it says otherwise.
    creates: str | None = None
    collection: str | None = None
    summary: str = ""
    description: str = ""


Handler = Callable[[Call], Awaitable[Any]]
Endpoint = Callable[[Request], Awaitable[Response]]


def render(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, Answer):
        answer: Answer[Any] = result
        return JSONResponse(
            answer.body.model_dump(mode="json"), status_code=answer.status, headers=answer.headers
        )
    if isinstance(result, BaseModel):
        return JSONResponse(result.model_dump(mode="json"))
    raise TypeError(f"a route answered {type(result).__name__}, not a response model")


def api(
    permission: Permission,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    ids: dict[str, str] | None = None,
    path: dict[str, str] | None = None,
    patterns: dict[str, str] | None = None,
    success: tuple[int, ...] = (200,),
    errors: tuple[int, ...] = (),
    error_models: tuple[type[BaseModel], ...] = (),
    upload: bool = False,
    creates: str | None = None,
    collection: str | None = None,
) -> Callable[[Handler], Endpoint]:
    """An owner-authenticated route needing `permission`; `ids` names its UUID path parameters
    (`{"id": "connection id"}`), checked before the body is read. The handler's docstring is its
    summary (first line) and description (the rest)."""

    def wrap(handler: Handler) -> Endpoint:
        summary, _, description = (handler.__doc__ or "").strip().partition("\n")
        spec = ApiSpec(
            permission,
            body,
            query,
            response,
            dict(ids or {}),
            path=dict(path or {}),
            patterns=dict(patterns or {}),
            success=success,
            errors=errors,
            error_models=error_models,
            upload=upload,
            creates=creates,
            collection=collection,
            summary=summary.strip(),
            description=inspect.cleandoc(description),
        )

        async def endpoint(request: Request) -> Response:
            window = Window(request)

            async def work() -> Response:
                core = core_of(request)
                try:
                    principal = await core.identity.authenticate_owner(
                        presented_key(request), client_of(request)
                    )
                except (Unauthenticated, Throttled):
                    await window.count_address()
                    raise
                note_key(request.scope, principal.key_id)
                await window.count_key(principal)
                principal.require(permission)
                parsed_ids = {
                    name: uuid_of(request.path_params[name], what) for name, what in spec.ids.items()
                }
                parsed_query = parse(query, dict(request.query_params)) if query is not None else None
                parsed_body = (
                    parse(body, await json_object(request, core.settings.max_body_bytes))
                    if body is not None
                    else None
                )
                call = Call(request, core, principal, parsed_ids, parsed_body, parsed_query)
                with acting_as(Actor.key(principal.key_id)):  # whom the audit trail names
                    return render(await handler(call))

            return window.shown_on(await guarded(request, work))

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        endpoint.api = spec  # type: ignore[attr-defined]
        return endpoint

    return wrap
