"""The files API: `/connectors` (create, list, get, delete), `/connectors/{id}:upload` and
`/connectors/{id}/content`, in the snake_case shapes and words its users know, behind API keys and
owner scoping. The use cases live in server/core/files.py."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, JsonValue, model_validator
from starlette.responses import Response

from server.core.errors import Invalid
from server.core.files import FILES_API_STATUS, GCS, Chunk, Position, connector_id, file_uri, iso
from server.web.api.endpoint import Answer, Call, RequestModel, api, examples
from storage.repositories import ConnectionRecord

REF = "The file connector's id, `conn_` and 32 hex digits."
REF_PATTERN = "^conn_[0-9a-f]{32}$"


def _absent_when_none(value: object) -> bool:
    return value is None


class FileMetadata(BaseModel):
    file_size: int = Field(description="Bytes.")
    mime_type: str = Field(description="The content's type.")
    last_modified: str | None = Field(description="When it was uploaded.")
    total_lines: int | None = Field(description="Lines, for text.")


class FileConnectorOut(BaseModel):
    id: str = Field(description="The files-API id, `conn_<hex>`.")
    connection_id: str = Field(description="The same connection's id in /api/v1/connections.")
    name: str = Field(description="Its name.")
    type: str = Field(description="local_file or gcs.")
    config: dict[str, Any] = Field(description="filename, file_type, encoding; or gcs_url.")
    status: str = Field(description="pending_upload, active or error.")
    created_at: str | None = Field(description="When it was made.")
    metadata: FileMetadata | None = Field(
        default=None, exclude_if=_absent_when_none, description="Once uploaded."
    )
    resource_uri: str | None = Field(
        default=None, exclude_if=_absent_when_none, description="Its MCP resource."
    )
    resource_uri_template: str | None = Field(
        default=None, exclude_if=_absent_when_none, description="Its objects' MCP resources (GCS)."
    )

    @classmethod
    def of(cls, record: ConnectionRecord) -> FileConnectorOut:
        config, facts = dict(record.config), record.account
        extra: dict[str, Any] = {}
        if record.connector_slug == GCS:
            # No FUSE mount here: agents read the folder through MCP resources instead.
            config["local_mount_point_path"] = None
            extra["resource_uri_template"] = f"tendril://gcs/{record.id}/{{+path}}"
        elif facts.get("file_key"):
            config["file_path"] = f"/uploads/{connector_id(record)}/{config.get('filename') or 'content'}"
            extra["metadata"] = FileMetadata.model_validate(facts)
            extra["resource_uri"] = file_uri(record.id)
        return cls(
            id=connector_id(record),
            connection_id=str(record.id),
            name=record.label,
            type=record.connector_slug,
            config=config,
            status=FILES_API_STATUS.get(record.status, record.status),
            created_at=iso(record.created_at),
            **extra,
        )


class FileConnectorList(BaseModel):
    connectors: list[FileConnectorOut] = Field(description="The owner's file connectors.")


class LineChunk(BaseModel):
    offset: int = Field(description="First line read (0-based).")
    limit: int | None = Field(description="Most lines asked for; null for all.")
    total_lines: int | None = Field(description="Lines in the whole file, when known.")


class ByteChunk(BaseModel):
    bytes_start: int = Field(description="First byte read.")
    bytes_end: int = Field(description="End of the bytes returned (exclusive).")
    total_lines: int | None = Field(description="Lines in the whole file, when known.")


class ContentOut(BaseModel):
    connector_id: str = Field(description="The files-API id.")
    content: str = Field(description="The chunk: text, or base64 when it is not text.")
    encoding: str = Field(description="The text encoding, or base64.")
    content_type: str = Field(description="The content's type.")
    total_size: int = Field(description="Bytes in the whole file.")
    chunk_info: LineChunk | ByteChunk = Field(description="Which part this is.")


class GcsConfig(RequestModel):
    gcs_url: str | None = Field(None, description="gs://bucket/folder: the folder agents may read.")


class NewFileConnector(RequestModel):
    model_config = examples(
        {"name": "Customer Data", "type": "local_file", "filename": "customers.csv", "file_type": "csv"},
        {"name": "Analytics Bucket", "type": "gcs", "config": {"gcs_url": "gs://my-analytics-bucket/data"}},
    )
    name: str | None = Field(None, description="A name for it.")
    type: str | None = Field(None, description="local_file (default) or gcs.")
    filename: str | None = Field(None, description="The file's name (local_file).")
    file_type: str | None = Field(None, description="csv, json, text or binary (local_file).")
    encoding: str | None = Field(None, description="Its text encoding, utf-8 by default (local_file).")
    config: GcsConfig | None = Field(None, description='{"gcs_url": "gs://bucket/folder"} (gcs).')
    credentials: dict[str, JsonValue] | None = Field(
        None,
        description="gcs: a Google service-account key of your own (the key file's JSON), to read a "
        "bucket the server has not granted you; stored encrypted, never shown back.",
    )
    field_messages: ClassVar[dict[str, str]] = {"name": "name must be a string of at most 200 characters"}


class ContentQuery(RequestModel):
    path: str | None = Field(None, description="The object to read, relative to gcs_url (gcs).")
    offset: Position | None = Field(None, description="First line to read (0-based).")
    limit: Position | None = Field(None, description="Most lines to read.")
    bytes_start: Position | None = Field(None, description="First byte to read.")
    bytes_end: Position | None = Field(None, description="Byte to stop before.")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_absent(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data


@api("read", response=FileConnectorList)
async def list_file_connectors(call: Call) -> FileConnectorList:
    """List file connectors"""
    records = await call.core.files.list(call.owner_id)
    return FileConnectorList(connectors=[FileConnectorOut.of(r) for r in records])


@api(
    "write",
    body=NewFileConnector,
    response=FileConnectorOut,
    success=(201,),
    errors=(502, 503),
    creates="/id",
)
async def create_file_connector(call: Call) -> Answer[FileConnectorOut]:
    """Create a file connector
    A local_file connector waits for its upload; a gcs connector names a bucket folder that agents
    then read as MCP resources."""
    body: NewFileConnector = call.body
    record = await call.core.files.create(
        call.owner_id,
        name=body.name,
        kind=body.type,
        filename=body.filename,
        file_type=body.file_type,
        encoding=body.encoding,
        gcs_url=body.config.gcs_url if body.config else None,
        gcs_credentials=body.credentials,
    )
    return Answer(FileConnectorOut.of(record), 201)


@api("read", response=FileConnectorOut, path={"ref": REF}, patterns={"ref": REF_PATTERN})
async def get_file_connector(call: Call) -> FileConnectorOut:
    """Get a file connector"""
    return FileConnectorOut.of(await call.core.files.get(call.owner_id, call.request.path_params["ref"]))


@api(
    "write",
    response=FileConnectorOut,
    path={"ref": REF},
    patterns={"ref": REF_PATTERN},
    errors=(409, 503),
    upload=True,
)
async def upload_file_content(call: Call) -> FileConnectorOut:
    """Upload a file connector's content
    The body is the file itself; a new upload replaces the old one."""
    request = call.request
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdecimal():
        raise Invalid("Content-Length must be a number of bytes")
    record = await call.core.files.upload(
        call.owner_id,
        request.path_params["ref"],
        request.stream(),
        declared_length=int(declared) if declared is not None else None,
        content_type=request.headers.get("content-type"),
    )
    return FileConnectorOut.of(record)


@api("write", path={"ref": REF}, patterns={"ref": REF_PATTERN}, success=(204,))
async def delete_file_connector(call: Call) -> Response:
    """Delete a file connector and its content"""
    await call.core.files.delete(call.owner_id, call.request.path_params["ref"])
    return Response(status_code=204)


@api(
    "read",
    query=ContentQuery,
    response=ContentOut,
    path={"ref": REF},
    patterns={"ref": REF_PATTERN},
    errors=(409, 502, 503, 504),
)
async def get_file_content(call: Call) -> ContentOut:
    """Read a file connector's content
    By lines (offset, limit) or by bytes (bytes_start, bytes_end); text comes back as text, other
    content as base64. For gcs, `path` names the object within the folder."""
    files, query = call.core.files, call.query
    assert isinstance(query, ContentQuery)
    record = await files.get(call.owner_id, call.request.path_params["ref"])
    byte_range = None
    if query.bytes_start is not None or query.bytes_end is not None:
        if query.offset is not None or query.limit is not None:
            raise Invalid("use either offset/limit (lines) or bytes_start/bytes_end, not both")
        if (
            query.bytes_start is not None
            and query.bytes_end is not None
            and query.bytes_end < query.bytes_start
        ):
            raise Invalid("bytes_end must not be before bytes_start", field="bytes_end")
        byte_range = (query.bytes_start or 0, query.bytes_end)
    if record.connector_slug == GCS:
        if not query.path:
            raise Invalid(
                "Missing required field: path (the object to read, relative to gcs_url)", field="path"
            )
        chunk = await files.read_gcs(
            record, query.path, offset=query.offset, limit=query.limit, byte_range=byte_range
        )
    else:
        chunk = await files.read_local(record, offset=query.offset, limit=query.limit, byte_range=byte_range)
    return _content(connector_id(record), chunk, query, byte_range)


def _content(
    ref: str, chunk: Chunk, query: ContentQuery, byte_range: tuple[int, int | None] | None
) -> ContentOut:
    if byte_range is not None:
        end = byte_range[0] + len(chunk.data)
        info: LineChunk | ByteChunk = ByteChunk(
            bytes_start=byte_range[0], bytes_end=end, total_lines=chunk.total_lines
        )
    else:
        info = LineChunk(offset=query.offset or 0, limit=query.limit, total_lines=chunk.total_lines)
    return ContentOut(
        connector_id=ref,
        content=chunk.content,
        encoding=chunk.encoding,
        content_type=chunk.mime_type,
        total_size=chunk.total_size,
        chunk_info=info,
    )
