"""What every REST route shares: the API key and its permission, path ids, the body and query
string parsed into the route's pydantic models, and the answer rendered from its response model.

A route declares all of it (`@api("write", body=..., query=..., response=..., ids=...)`), so the
declaration is also what describes the route (permission, models, statuses) to whoever reads it.
"""

from __future__ import annotations

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
from server.core.identity import OwnerPrincipal
from server.web.reading import client_of, core_of, guarded, json_object, parse, uuid_of

M = TypeVar("M", bound=BaseModel)


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
    """What a route declares: the permission it needs and the models it reads and answers."""

    permission: Permission
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    ids: dict[str, str]


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
) -> Callable[[Handler], Endpoint]:
    """An owner-authenticated route needing `permission`; `ids` names its UUID path parameters
    (`{"id": "connection id"}`), checked before the body is read."""
    spec = ApiSpec(permission, body, query, response, dict(ids or {}))

    def wrap(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            async def work() -> Response:
                core = core_of(request)
                principal = await core.identity.authenticate_owner(presented_key(request), client_of(request))
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
                return render(await handler(call))

            return await guarded(request, work)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        endpoint.api = spec  # type: ignore[attr-defined]
        return endpoint

    return wrap
