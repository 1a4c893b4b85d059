"""File connections (uploaded files and GCS folders): the use cases behind `/connectors` and the
MCP resources. They are ordinary connections of the `local_file` and `gcs` connectors; the file
facts (object key, size, MIME type, lines) live in the connection's `account`.
"""

from __future__ import annotations

import base64
import codecs
import mimetypes
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio.to_thread

from connectors.gcs.actions import GcsRoot, OutsideRoot, filesystem
from server.errors import ApiError
from server.settings import Settings
from storage.files import BadEncoding, FileStore, UploadTooLarge, read_lines, read_range
from storage.notices import ChangeNotices
from storage.repositories import ConnectionRecord, ConnectionStatus, Store

LOCAL_FILE, GCS = "local_file", "gcs"
FILE_TYPES = ("csv", "json", "text", "binary")
_TYPE_MIME = {"csv": "text/csv", "json": "application/json", "text": "text/plain"}
_CONNECTOR_ID = re.compile(r"^conn_[A-Za-z0-9]+$")
MAX_READ_BYTES = 16 << 20  # one answer; bigger reads go in chunks
GCS_UPLOAD_REFUSED = " ".join(  # the seed's words, though no FUSE mount is involved here
    (
        "Content upload not supported for GCS connectors.",
        "Files are accessed directly via the mounted file system.",
    )
)
_SEED_STATUS = {
    ConnectionStatus.PENDING: "pending_upload",
    ConnectionStatus.ACTIVE: "active",
    ConnectionStatus.NEEDS_REAUTH: "error",
}

FileChanged = Callable[[ConnectionRecord], Awaitable[None]]
_FILE_NOTICE = "file"  # storage.notices topic: file:<connection id>, after an upload


def connector_id(record: ConnectionRecord) -> str:
    return f"conn_{record.id.hex}"


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass(frozen=True, slots=True)
class Chunk:
    """What a read returns: text when it decodes in the file's encoding, else base64."""

    data: bytes
    text: str | None
    encoding: str  # the text encoding, or "base64"
    mime_type: str
    total_size: int
    total_lines: int | None

    @property
    def content(self) -> str:
        return self.text if self.text is not None else base64.b64encode(self.data).decode()


def _chunk(data: bytes, encoding: str | None, mime: str, size: int, lines: int | None) -> Chunk:
    if encoding is not None:
        try:
            return Chunk(data, data.decode(encoding), encoding, mime, size, lines)
        except UnicodeDecodeError:
            pass  # a byte range that cuts a character, or a binary object
    return Chunk(data, None, "base64", mime, size, lines)


class FileService:
    def __init__(self, settings: Settings, store: Store, notices: ChangeNotices) -> None:
        self.settings = settings
        self.store = store
        url = settings.resolved_files_url
        self.file_store = FileStore(url, **self._storage_options(url)) if url else None
        self.listeners: list[FileChanged] = []  # told on every replica (storage.notices)
        self.notices = notices
        notices.subscribe(self._on_notice)

    async def _on_notice(self, topic: str) -> None:
        kind, _, ref = topic.partition(":")
        if kind != _FILE_NOTICE:
            return
        record = await self.store.connection_by_id(UUID(ref))
        if record is None:
            return
        for listener in self.listeners:
            await listener(record)

    def _storage_options(self, url: str) -> dict[str, Any]:
        """Files kept in GCS use the same Google settings as gcs connections."""
        if not url.startswith("gs://"):
            return {}
        options = {
            "token": self.settings.gcs_token or "google_default",
            "endpoint_url": self.settings.gcs_endpoint_url,
            "project": self.settings.gcs_project,
        }
        return {k: v for k, v in options.items() if v is not None}

    # -- lookups -----------------------------------------------------------------------------
    async def get(self, owner_id: UUID, ref: str) -> ConnectionRecord:
        """The owner's file connection named by a seed id (`conn_<hex>`)."""
        if not _CONNECTOR_ID.match(ref):
            raise ApiError(400, "Invalid connector ID format")
        try:
            connection_id = UUID(hex=ref[len("conn_") :])
        except ValueError:
            raise ApiError(404, "Connector not found") from None
        record = await self.store.get_connection(owner_id, connection_id)
        if record is None or record.connector_slug not in (LOCAL_FILE, GCS):
            raise ApiError(404, "Connector not found")
        return record

    async def list(
        self, owner_id: UUID, slugs: tuple[str, ...] = (LOCAL_FILE, GCS)
    ) -> list[ConnectionRecord]:
        records = await self.store.list_connections(owner_id, connector_slugs=list(slugs))
        return [r for r in records if r.status != ConnectionStatus.REVOKED]

    # -- create --------------------------------------------------------------------------------
    async def create(self, owner_id: UUID, body: Mapping[str, Any]) -> ConnectionRecord:
        name = body.get("name")
        if name in (None, ""):
            raise ApiError(400, "Missing required field: name")
        if not isinstance(name, str) or len(name) > 200:
            raise ApiError(400, "name must be a string of at most 200 characters")
        kind = body.get("type", LOCAL_FILE)  # the seed's own JavaScript example leaves it out
        if kind == LOCAL_FILE:
            config = self._local_config(body)
            self._require_file_store()
        elif kind == GCS:
            config = self._gcs_config(body)
            self._require_gcs()
        else:
            raise ApiError(400, f"Invalid connector type: {kind!r} (use 'local_file' or 'gcs')")
        record = await self.store.create_connection(
            owner_id, connector_slug=kind, label=name.strip(), config=config, auth_method="none"
        )
        if kind == GCS:  # nothing to upload: usable at once
            activated = await self.store.record_connection_facts(
                owner_id, record.id, account={}, status=ConnectionStatus.ACTIVE
            )
            record = activated or record
        return record

    @staticmethod
    def _local_config(body: Mapping[str, Any]) -> dict[str, Any]:
        filename, file_type = body.get("filename"), body.get("file_type")
        encoding = body.get("encoding") or "utf-8"
        if filename is not None and (not isinstance(filename, str) or "/" in filename or "\\" in filename):
            raise ApiError(400, "filename must be a plain file name")
        if file_type is not None and file_type not in FILE_TYPES:
            raise ApiError(400, f"file_type must be one of {', '.join(FILE_TYPES)}")
        try:
            encoding = codecs.lookup(str(encoding)).name.replace("_", "-")
        except LookupError:
            raise ApiError(400, f"Unsupported encoding: {encoding}") from None
        config: dict[str, Any] = {"filename": filename, "file_type": file_type, "encoding": encoding}
        return {k: v for k, v in config.items() if v is not None}

    @staticmethod
    def _gcs_config(body: Mapping[str, Any]) -> dict[str, Any]:
        config = body.get("config")
        url = config.get("gcs_url") if isinstance(config, dict) else None
        if url in (None, ""):
            raise ApiError(400, "Missing required field: config.gcs_url")
        try:
            root = GcsRoot.parse(url)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return {"gcs_url": root.url}

    def _require_file_store(self) -> FileStore:
        if self.file_store is None:
            raise ApiError(503, "File storage is not configured (set TENDRIL_FILES_URL)")
        return self.file_store

    def _require_gcs(self) -> Any:
        token = self.settings.gcs_token
        if token is None:
            raise ApiError(503, "GCS storage is not configured (set TENDRIL_GCS_TOKEN)")
        return filesystem(
            token=token, endpoint_url=self.settings.gcs_endpoint_url, project=self.settings.gcs_project
        )

    # -- upload --------------------------------------------------------------------------------
    async def upload(
        self,
        owner_id: UUID,
        ref: str,
        chunks: AsyncIterator[bytes],
        *,
        declared_length: int | None,
        content_type: str | None,
    ) -> ConnectionRecord:
        record = await self.get(owner_id, ref)
        if record.connector_slug == GCS:
            raise ApiError(400, GCS_UPLOAD_REFUSED)
        store = self._require_file_store()
        limit = self.settings.max_upload_bytes
        if declared_length is not None and declared_length > limit:
            raise ApiError(413, f"upload is larger than {limit} bytes")
        encoding = (
            None if record.config.get("file_type") == "binary" else record.config.get("encoding", "utf-8")
        )
        try:
            saved = await store.save(record.id.hex, chunks, max_bytes=limit, encoding=encoding)
        except UploadTooLarge as exc:
            raise ApiError(413, str(exc)) from None
        except BadEncoding as exc:
            raise ApiError(400, str(exc)) from None
        previous = record.account.get("file_key")
        facts = {
            "file_key": saved.key,
            "file_size": saved.size,
            "total_lines": saved.total_lines,
            "mime_type": self._mime(record, content_type),
            "last_modified": _iso(self.store.clock()),
            "version": int(record.account.get("version", 0)) + 1,
        }
        updated = await self.store.record_connection_facts(
            owner_id, record.id, account=facts, status=ConnectionStatus.ACTIVE
        )
        if updated is None:  # deleted while the bytes streamed in
            await store.delete(saved.key)
            raise ApiError(404, "Connector not found")
        if previous:
            await store.delete(previous)
        await self.notices.publish(f"{_FILE_NOTICE}:{updated.id}")
        return updated

    @staticmethod
    def _mime(record: ConnectionRecord, content_type: str | None) -> str:
        filename, file_type = record.config.get("filename"), record.config.get("file_type")
        guessed = mimetypes.guess_type(filename)[0] if filename else None
        if guessed:
            return guessed
        if file_type in _TYPE_MIME:
            return _TYPE_MIME[file_type]
        if file_type == "binary":
            return "application/octet-stream"
        declared = (content_type or "").split(";")[0].strip().lower()
        return declared or "application/octet-stream"

    # -- read ----------------------------------------------------------------------------------
    def _require_active(self, record: ConnectionRecord) -> None:
        if record.status != ConnectionStatus.ACTIVE:
            status = _SEED_STATUS.get(record.status, record.status)
            raise ApiError(409, f"Connector is not active (status: {status})")

    async def read_local(
        self,
        record: ConnectionRecord,
        *,
        offset: int | None = None,
        limit: int | None = None,
        byte_range: tuple[int, int | None] | None = None,
    ) -> Chunk:
        self._require_active(record)
        store = self._require_file_store()
        facts = record.account
        size, key = int(facts["file_size"]), str(facts["file_key"])
        encoding = (
            None if record.config.get("file_type") == "binary" else record.config.get("encoding", "utf-8")
        )
        if byte_range is not None:
            start, end = byte_range[0], min(byte_range[1] if byte_range[1] is not None else size, size)
            _check_read_size(end - start)
            data = await store.read_range(key, start, end)
        else:
            if limit is None and offset in (None, 0):
                _check_read_size(size)
            data = await store.read_lines(key, offset or 0, limit)
            _check_read_size(len(data))
        return _chunk(data, encoding, str(facts["mime_type"]), size, int(facts["total_lines"]))

    def gcs_root(self, record: ConnectionRecord) -> GcsRoot:
        return GcsRoot.parse(record.config["gcs_url"])

    def gcs_path(self, record: ConnectionRecord, relative: str) -> str:
        try:
            return self.gcs_root(record).resolve(relative)
        except OutsideRoot as exc:
            raise ApiError(400, f"path refused: {exc}") from None

    async def read_gcs(
        self,
        record: ConnectionRecord,
        relative: str,
        *,
        offset: int | None = None,
        limit: int | None = None,
        byte_range: tuple[int, int | None] | None = None,
    ) -> Chunk:
        self._require_active(record)
        fs = self._require_gcs()
        path = self.gcs_path(record, relative)
        if path == self.gcs_root(record).prefix:
            raise ApiError(400, "path must name an object inside the connector's folder")
        try:
            info = await anyio.to_thread.run_sync(fs.info, path)
        except FileNotFoundError:
            raise ApiError(404, f"No such object: {relative}") from None
        if info.get("type") != "file":
            raise ApiError(400, f"{relative} is a folder, not an object")
        size = int(info.get("size") or 0)
        mime = _object_mime(path, info)
        encoding = "utf-8"  # bucket objects declare no text encoding: UTF-8 when it decodes, else base64
        if byte_range is not None:
            start, end = byte_range[0], min(byte_range[1] if byte_range[1] is not None else size, size)
            _check_read_size(end - start)
            data = await anyio.to_thread.run_sync(read_range, fs, path, start, end)
        else:
            if limit is None and offset in (None, 0):
                _check_read_size(size)
            data = await anyio.to_thread.run_sync(read_lines, fs, path, offset or 0, limit)
            _check_read_size(len(data))
        return _chunk(data, encoding, mime, size, None)

    async def list_gcs(
        self, record: ConnectionRecord, *, after: str | None = None, page_size: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Objects under the folder, by name, `page_size` at a time after the name `after`."""
        self._require_active(record)
        fs = self._require_gcs()
        root = self.gcs_root(record)
        found: dict[str, dict[str, Any]] = await anyio.to_thread.run_sync(
            lambda: fs.find(root.prefix, detail=True)
        )
        names = sorted(root.relative(path) for path, info in found.items() if info.get("type") == "file")
        remaining = [n for n in names if after is None or n > after]
        page = remaining[:page_size]
        objects = [
            {
                "path": name,
                "size": int(found[root.resolve(name)].get("size") or 0),
                "mime_type": _object_mime(name, found[root.resolve(name)]),
            }
            for name in page
        ]
        return objects, (page[-1] if len(remaining) > page_size else None)

    # -- delete --------------------------------------------------------------------------------
    async def delete(self, owner_id: UUID, ref: str) -> None:
        record = await self.get(owner_id, ref)
        await self.store.revoke_connection(owner_id, record.id)
        key = record.account.get("file_key")
        if key and self.file_store is not None:
            await self.file_store.delete(str(key))

    # -- the seed's shapes ---------------------------------------------------------------------
    def render(self, record: ConnectionRecord) -> dict[str, Any]:
        config = dict(record.config)
        body: dict[str, Any] = {
            "id": connector_id(record),
            "connection_id": str(record.id),
            "name": record.label,
            "type": record.connector_slug,
            "config": config,
            "status": _SEED_STATUS.get(record.status, record.status),
            "created_at": _iso(record.created_at),
        }
        if record.connector_slug == GCS:
            # No FUSE mount here: agents read the folder through MCP resources instead.
            config["local_mount_point_path"] = None
            body["resource_uri_template"] = f"tendril://gcs/{record.id}/{{+path}}"
            return body
        facts = record.account
        if facts.get("file_key"):
            config["file_path"] = f"/uploads/{connector_id(record)}/{config.get('filename') or 'content'}"
            body["metadata"] = {
                "file_size": facts["file_size"],
                "mime_type": facts["mime_type"],
                "last_modified": facts["last_modified"],
                "total_lines": facts["total_lines"],
            }
            body["resource_uri"] = f"tendril://files/{record.id}"
        return body


def _object_mime(path: str, info: Mapping[str, Any]) -> str:
    """The object's stored content type, unless it is the generic one and the name says better."""
    stored = str(info.get("contentType") or "")
    if stored and stored != "application/octet-stream":
        return stored
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _check_read_size(size: int) -> None:
    if size > MAX_READ_BYTES:
        raise ApiError(
            400,
            f"that read is {size} bytes, more than {MAX_READ_BYTES} in one answer: "
            "read it in chunks with offset/limit or bytes_start/bytes_end",
        )
