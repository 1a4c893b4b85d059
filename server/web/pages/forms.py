"""Reading a submitted form: bounded in size, parsed into the page's pydantic model, so a
malformed or oversized form is a clear 400 or 413 page, never an error in the log."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, TypeVar, get_origin
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from server.core.errors import Invalid
from server.web.reading import bounded_body, parse

F = TypeVar("F", bound=BaseModel)


class Form(BaseModel):
    """A page's form: fields it does not name are ignored (a credential form names them itself)."""

    model_config = ConfigDict(extra="allow")
    csrf: str | None = None

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


async def read_form(request: Request, model: type[F], limit: int) -> F:
    body = await bounded_body(request, limit)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        fields = await _multipart(request, body, limit)
    else:
        try:
            fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise Invalid("the form is not valid UTF-8") from None
    return parse(model, _by_name(model, fields))


def _by_name(model: type[BaseModel], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """A field the model declares as a list (a group of checkboxes) gets every value sent for it, in
    order, and none when nothing was sent; any other field gets the last value sent."""
    lists = {name for name, info in model.model_fields.items() if get_origin(info.annotation) is list}
    fields: dict[str, Any] = {name: [] for name in lists}
    for key, value in pairs:
        if key in lists:
            fields[key].append(value)
        else:
            fields[key] = value
    return fields


async def _multipart(request: Request, body: bytes, limit: int) -> list[tuple[str, str]]:
    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        parsed = await MultiPartParser(request.headers, chunks(), max_files=0, max_part_size=limit).parse()
    except MultiPartException as exc:
        raise Invalid(f"the form could not be read: {exc.message}") from None
    fields: list[tuple[str, str]] = []
    for key, value in parsed.multi_items():
        if isinstance(value, UploadFile):
            await value.close()
            raise Invalid("forms here take no files")
        fields.append((key, value))
    return fields
