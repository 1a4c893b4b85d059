"""The files API as `connector-api-files-gcs.md` writes it (`/connectors`, `:upload`, `/content`),
plus API-key authentication and owner scoping. The use cases live in server/files.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.errors import ApiError
from server.files import GCS, Chunk, connector_id
from server.hub import OwnerPrincipal
from server.web._http import endpoint, hub_of, json_object

_UPLOAD_SUFFIX = ":upload"


@endpoint("read")
async def list_file_connectors(request: Request, principal: OwnerPrincipal) -> Response:
    files = hub_of(request).files
    records = await files.list(principal.owner_id)
    return JSONResponse({"connectors": [files.render(r) for r in records]})


@endpoint("write")
async def create_file_connector(request: Request, principal: OwnerPrincipal) -> Response:
    files = hub_of(request).files
    record = await files.create(principal.owner_id, await json_object(request))
    return JSONResponse(files.render(record), status_code=201)


@endpoint("read")
async def get_file_connector(request: Request, principal: OwnerPrincipal) -> Response:
    files = hub_of(request).files
    return JSONResponse(files.render(await files.get(principal.owner_id, request.path_params["ref"])))


@endpoint("write")
async def upload_content(request: Request, principal: OwnerPrincipal) -> Response:
    ref: str = request.path_params["ref"]
    if not ref.endswith(_UPLOAD_SUFFIX):
        raise ApiError(405, "POST is only for /connectors/{id}:upload", headers={"Allow": "GET, DELETE"})
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise ApiError(400, "Content-Length must be a number of bytes")
    files = hub_of(request).files
    record = await files.upload(
        principal.owner_id,
        ref.removesuffix(_UPLOAD_SUFFIX),
        request.stream(),
        declared_length=int(declared) if declared is not None else None,
        content_type=request.headers.get("content-type"),
    )
    return JSONResponse(files.render(record))


@endpoint("write")
async def delete_file_connector(request: Request, principal: OwnerPrincipal) -> Response:
    await hub_of(request).files.delete(principal.owner_id, request.path_params["ref"])
    return Response(status_code=204)


def _whole_number(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise ApiError(400, f"{name} must be a whole number of at least 0")
    return int(raw)


@endpoint("read")
async def get_content(request: Request, principal: OwnerPrincipal) -> Response:
    files = hub_of(request).files
    record = await files.get(principal.owner_id, request.path_params["ref"])
    offset, limit = _whole_number(request, "offset"), _whole_number(request, "limit")
    start, end = _whole_number(request, "bytes_start"), _whole_number(request, "bytes_end")
    byte_range = None
    if start is not None or end is not None:
        if offset is not None or limit is not None:
            raise ApiError(400, "use either offset/limit (lines) or bytes_start/bytes_end, not both")
        if start is not None and end is not None and end < start:
            raise ApiError(400, "bytes_end must not be before bytes_start")
        byte_range = (start or 0, end)
    if record.connector_slug == GCS:
        path = request.query_params.get("path")
        if not path:
            raise ApiError(400, "Missing required field: path (the object to read, relative to gcs_url)")
        chunk = await files.read_gcs(record, path, offset=offset, limit=limit, byte_range=byte_range)
    else:
        chunk = await files.read_local(record, offset=offset, limit=limit, byte_range=byte_range)
    return JSONResponse(_content_body(connector_id(record), chunk, offset, limit, byte_range))


def _content_body(
    ref: str, chunk: Chunk, offset: int | None, limit: int | None, byte_range: tuple[int, int | None] | None
) -> dict[str, object]:
    info: dict[str, object]
    if byte_range is not None:
        info = {"bytes_start": byte_range[0], "bytes_end": byte_range[0] + len(chunk.data)}
    else:
        info = {"offset": offset or 0, "limit": limit}
    info["total_lines"] = chunk.total_lines
    return {
        "connector_id": ref,
        "content": chunk.content,
        "encoding": chunk.encoding,
        "content_type": chunk.mime_type,
        "total_size": chunk.total_size,
        "chunk_info": info,
    }


def files_routes() -> list[Route]:
    return [
        Route("/connectors", list_file_connectors, methods=["GET"]),
        Route("/connectors", create_file_connector, methods=["POST"]),
        Route("/connectors/{ref}", get_file_connector, methods=["GET"]),
        Route("/connectors/{ref}", upload_content, methods=["POST"]),
        Route("/connectors/{ref}", delete_file_connector, methods=["DELETE"]),
        Route("/connectors/{ref}/content", get_content, methods=["GET"]),
    ]
