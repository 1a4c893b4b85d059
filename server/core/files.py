"""File connections (uploaded files and GCS folders): the use cases behind the files API and the
MCP resources. They are ordinary connections of the `local_file` and `gcs` connectors; the file
facts (object key, size, MIME type, lines) live in the connection's `account`. Error texts follow
the files API users know (`Connector not found`, `Missing required field: name`).
"""

from __future__ import annotations

import base64
import codecs
import json
import mimetypes
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

import anyio.to_thread
from pydantic import Field

from auth.credentials import CredentialVault
from auth.redaction import secrets_to_redact
from connectors import Catalog
from connectors.gcs import GcsRoot, OutsideRoot, filesystem
from server.core.connections import Connections
from server.core.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge, Unavailable
from server.core.events import ChangeEvents
from server.core.gcs_grants import GcsGrants
from server.settings import Settings
from storage.files import BadEncoding, FileStore, UploadTooLarge, read_lines, read_range
from storage.repositories import ConnectionRecord, ConnectionStatus, utcnow

LOCAL_FILE, GCS = "local_file", "gcs"
FILE_CONNECTORS = (LOCAL_FILE, GCS)
FILE_TYPES = ("csv", "json", "text", "binary")
_TYPE_MIME = {"csv": "text/csv", "json": "application/json", "text": "text/plain"}
_CONNECTOR_ID = re.compile(r"^conn_[A-Za-z0-9]+$")
MAX_READ_BYTES = 16 << 20  # one answer; bigger reads go in chunks
GCS_UPLOAD_REFUSED = " ".join(  # the files API's words, though no FUSE mount is involved here
    (
        "Content upload not supported for GCS connectors.",
        "Files are accessed directly via the mounted file system.",
    )
)
_KEY_FIELD = "service_account_json"  # how a connection's own GCS key is sealed
_KEY_REQUIRED = ("type", "client_email", "private_key")
FILES_API_STATUS = {
    ConnectionStatus.PENDING: "pending_upload",
    ConnectionStatus.ACTIVE: "active",
    ConnectionStatus.NEEDS_REAUTH: "error",
}

# A line or byte position in a read: a whole number that fits the 64-bit offsets storage uses.
Position = Annotated[int, Field(ge=0, le=2**63 - 1)]


def file_uri(connection_id: UUID) -> str:
    """The MCP resource of an uploaded file."""
    return f"tendril://files/{connection_id}"


def gcs_uri(connection_id: UUID, path: str) -> str:
    """The MCP resource of an object under a GCS connection's folder. Object names are data: one
    holding `%` or a space is percent-encoded here, and decoded once when read."""
    return f"tendril://gcs/{connection_id}/{quote(path, safe='/')}"


def connector_id(record: ConnectionRecord) -> str:
    return f"conn_{record.id.hex}"


def iso(moment: datetime | None) -> str | None:
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
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        connections: Connections,
        events: ChangeEvents,
        grants: GcsGrants,
        vault: CredentialVault,
    ) -> None:
        self.settings = settings
        self._catalog = catalog
        self._connections = connections
        self._events = events
        self.grants = grants
        self._vault = vault
        url = settings.resolved_files_url
        self.file_store = FileStore(url, **self._storage_options(url)) if url else None

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
        """The owner's file connection named by its files-API id (`conn_<hex>`)."""
        if not _CONNECTOR_ID.match(ref):
            raise Invalid("Invalid connector ID format")
        try:
            connection_id = UUID(hex=ref[len("conn_") :])
        except ValueError:
            raise NotFound("Connector not found") from None
        record = await self._connections.find(owner_id, connection_id)
        if record is None or record.connector_slug not in FILE_CONNECTORS:
            raise NotFound("Connector not found")
        return record

    async def list(self, owner_id: UUID, slugs: tuple[str, ...] = FILE_CONNECTORS) -> list[ConnectionRecord]:
        return await self._connections.list(owner_id, connector_slugs=list(slugs))

    async def visible(self, owner_id: UUID, slugs: tuple[str, ...]) -> list[ConnectionRecord]:
        """The owner's readable file connections of these kinds, in a stable order (for paging)."""
        if not slugs:
            return []
        records = await self._connections.list(
            owner_id, connector_slugs=list(slugs), status=ConnectionStatus.ACTIVE
        )
        return sorted(records, key=lambda r: str(r.id))

    async def readable(self, owner_id: UUID, slug: str, connection_id: UUID) -> ConnectionRecord | None:
        record = await self._connections.find(owner_id, connection_id)
        if record is None or record.connector_slug != slug or record.status != ConnectionStatus.ACTIVE:
            return None
        return record

    # -- create --------------------------------------------------------------------------------
    async def create(
        self,
        owner_id: UUID,
        *,
        name: str | None,
        kind: str | None = None,
        filename: str | None = None,
        file_type: str | None = None,
        encoding: str | None = None,
        gcs_url: str | None = None,
        gcs_credentials: Mapping[str, object] | None = None,
    ) -> ConnectionRecord:
        """A file connection. A gcs one reads with the server's credential, in a folder granted to
        the owner, or with `gcs_credentials` (a service-account key of the owner's), anywhere it may."""
        if not name:
            raise Invalid("Missing required field: name", field="name")
        if len(name) > 200:
            raise Invalid("name must be a string of at most 200 characters", field="name")
        kind = kind or LOCAL_FILE  # the files API's own JavaScript example leaves it out
        key: dict[str, str] | None = None
        if kind == LOCAL_FILE:
            config = self._local_config(filename, file_type, encoding)
            self._require_file_store()
        elif kind == GCS:
            config = self._gcs_config(gcs_url)
            root = GcsRoot.parse(config["gcs_url"])
            if gcs_credentials is not None:
                key = service_account_key(gcs_credentials)
                await self._check_readable(self._filesystem(key), root)
            else:
                self._require_gcs()
                await self._require_grant(owner_id, root)
        else:
            raise Invalid(f"Invalid connector type: {kind!r} (use 'local_file' or 'gcs')", field="type")
        record = await self._connections.add_file(owner_id, self._catalog[kind], label=name, config=config)
        if kind == GCS:  # nothing to upload: usable at once
            sealed = self._vault.seal(record.id, {_KEY_FIELD: json.dumps(key)}) if key else None
            record = await self._connections.activate(record, sealed_credentials=sealed, account={}) or record
        return record

    @staticmethod
    def _local_config(filename: str | None, file_type: str | None, encoding: str | None) -> dict[str, Any]:
        if filename is not None and ("/" in filename or "\\" in filename):
            raise Invalid("filename must be a plain file name", field="filename")
        if file_type is not None and file_type not in FILE_TYPES:
            raise Invalid(f"file_type must be one of {', '.join(FILE_TYPES)}", field="file_type")
        try:
            encoding = codecs.lookup(encoding or "utf-8").name.replace("_", "-")
        except LookupError:
            raise Invalid(f"Unsupported encoding: {encoding}", field="encoding") from None
        config: dict[str, Any] = {"filename": filename, "file_type": file_type, "encoding": encoding}
        return {k: v for k, v in config.items() if v is not None}

    @staticmethod
    def _gcs_config(url: str | None) -> dict[str, Any]:
        if not url:
            raise Invalid("Missing required field: config.gcs_url", field="config.gcs_url")
        try:
            root = GcsRoot.parse(url)
        except ValueError as exc:
            raise Invalid(str(exc), field="config.gcs_url") from None
        return {"gcs_url": root.url}

    def _require_file_store(self) -> FileStore:
        if self.file_store is None:
            raise Unavailable("File storage is not configured (set TENDRIL_FILES_URL)")
        return self.file_store

    def _require_gcs(self) -> Any:
        token = self.settings.gcs_token
        if token is None:
            raise Unavailable("GCS storage is not configured (set TENDRIL_GCS_TOKEN)")
        return self._filesystem(token)

    def _filesystem(self, token: str | dict[str, str]) -> Any:
        return filesystem(
            token=token, endpoint_url=self.settings.gcs_endpoint_url, project=self.settings.gcs_project
        )

    async def _require_grant(self, owner_id: UUID, root: GcsRoot) -> None:
        if not await self.grants.allows(owner_id, root):
            raise Forbidden(
                f"{root.url} is not granted to you: the operator grants buckets to owners "
                "(TENDRIL_GCS_GRANTS or `tendril gcs grant`), or give the connection a service-account "
                "key of your own as `credentials`"
            )

    @staticmethod
    async def _check_readable(fs: Any, root: GcsRoot) -> None:
        """Proves a supplied key reads the folder before anything is stored."""
        try:
            await anyio.to_thread.run_sync(lambda: fs.ls(root.prefix, detail=False))
        except FileNotFoundError:
            pass  # an empty folder is still readable
        except Exception as exc:
            raise Invalid(f"could not list {root.url} with that credential ({type(exc).__name__})") from None

    async def _gcs(self, record: ConnectionRecord) -> Any:
        """The filesystem a gcs connection reads with: its own key, else the server's, if granted."""
        if record.sealed_credentials is not None:
            opened = self._vault.open(record.id, record.sealed_credentials)
            return self._filesystem(service_account_key(json.loads(opened[_KEY_FIELD])))
        fs = self._require_gcs()
        await self._require_grant(record.owner_id, self.gcs_root(record))
        return fs

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
            raise Invalid(GCS_UPLOAD_REFUSED)
        store = self._require_file_store()
        limit = self.settings.max_upload_bytes
        if declared_length is not None and declared_length > limit:
            raise TooLarge(f"upload is larger than {limit} bytes")
        encoding = (
            None if record.config.get("file_type") == "binary" else record.config.get("encoding", "utf-8")
        )
        try:
            saved = await store.save(record.id.hex, chunks, max_bytes=limit, encoding=encoding)
        except UploadTooLarge as exc:
            raise TooLarge(str(exc)) from None
        except BadEncoding as exc:
            raise Invalid(str(exc)) from None
        previous = record.account.get("file_key")
        facts = {
            "file_key": saved.key,
            "file_size": saved.size,
            "total_lines": saved.total_lines,
            "mime_type": self._mime(record, content_type),
            "last_modified": iso(utcnow()),
            "version": int(record.account.get("version", 0)) + 1,
        }
        updated = await self._connections.activate(record, sealed_credentials=None, account=facts)
        if updated is None:  # deleted while the bytes streamed in
            await store.delete(saved.key)
            raise NotFound("Connector not found")
        if previous:
            await store.delete(previous)
        await self._events.file_changed(updated.id)
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
            status = FILES_API_STATUS.get(record.status, record.status)
            raise Conflict(f"Connector is not active (status: {status})")

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
        data = await _read_window(
            size,
            byte_range,
            offset,
            limit,
            lambda start, end: store.read_range(key, start, end),
            lambda first, count: store.read_lines(key, first, count),
        )
        return _chunk(data, encoding, str(facts["mime_type"]), size, int(facts["total_lines"]))

    def gcs_root(self, record: ConnectionRecord) -> GcsRoot:
        return GcsRoot.parse(record.config["gcs_url"])

    def gcs_path(self, record: ConnectionRecord, relative: str) -> str:
        try:
            return self.gcs_root(record).resolve(relative)
        except OutsideRoot as exc:
            raise Invalid(f"path refused: {exc}", field="path") from None

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
        fs = await self._gcs(record)
        path = self.gcs_path(record, relative)
        if path == self.gcs_root(record).prefix:
            raise Invalid("path must name an object inside the connector's folder", field="path")
        try:
            info = await anyio.to_thread.run_sync(fs.info, path)
        except FileNotFoundError:
            raise NotFound(f"No such object: {relative}") from None
        if info.get("type") != "file":
            raise Invalid(f"{relative} is a folder, not an object", field="path")
        size = int(info.get("size") or 0)
        mime = _object_mime(path, info)
        encoding = "utf-8"  # bucket objects declare no text encoding: UTF-8 when it decodes, else base64
        data = await _read_window(
            size,
            byte_range,
            offset,
            limit,
            lambda start, end: anyio.to_thread.run_sync(read_range, fs, path, start, end),
            lambda first, count: anyio.to_thread.run_sync(read_lines, fs, path, first, count),
        )
        return _chunk(data, encoding, mime, size, None)

    async def list_gcs(
        self, record: ConnectionRecord, *, after: str | None = None, page_size: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Objects under the folder, by name, `page_size` at a time after the name `after`."""
        self._require_active(record)
        fs = await self._gcs(record)
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
        await self._connections.revoke(owner_id, record.id)
        key = record.account.get("file_key")
        if key and self.file_store is not None:
            await self.file_store.delete(str(key))


def _object_mime(path: str, info: Mapping[str, Any]) -> str:
    """The object's stored content type, unless it is the generic one and the name says better."""
    stored = str(info.get("contentType") or "")
    if stored and stored != "application/octet-stream":
        return stored
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


async def _read_window(
    size: int,
    byte_range: tuple[int, int | None] | None,
    offset: int | None,
    limit: int | None,
    read_range: Callable[[int, int], Awaitable[bytes]],
    read_lines: Callable[[int, int | None], Awaitable[bytes]],
) -> bytes:
    """The bytes a read asks for (a byte range, or lines), refused when too many for one answer."""
    if byte_range is not None:
        start, end = _span(byte_range, size)
        _check_read_size(end - start)
        return await read_range(start, end)
    if limit is None and offset in (None, 0):
        _check_read_size(size)
    data = await read_lines(offset or 0, limit)
    _check_read_size(len(data))
    return data


def service_account_key(fields: Mapping[str, object]) -> dict[str, str]:
    """A Google service-account key (the JSON file's fields), checked for what signing needs."""
    key = {name: value for name, value in fields.items() if isinstance(value, str)}
    missing = [name for name in _KEY_REQUIRED if not key.get(name)]
    if key.get("type") != "service_account" or missing:
        raise Invalid(
            "credentials must be a Google service-account key (type service_account, "
            + ", ".join(_KEY_REQUIRED[1:])
            + ")",
            field="credentials",
        )
    secrets_to_redact.register(key["private_key"])
    return key


def _span(byte_range: tuple[int, int | None], size: int) -> tuple[int, int]:
    """The bytes [start, end) of a requested range that exist; empty past the end of the file."""
    start = min(byte_range[0], size)
    end = size if byte_range[1] is None else min(byte_range[1], size)
    return start, max(start, end)


def _check_read_size(size: int) -> None:
    if size > MAX_READ_BYTES:
        raise Invalid(
            f"that read is {size} bytes, more than {MAX_READ_BYTES} in one answer: "
            "read it in chunks with offset/limit or bytes_start/bytes_end",
        )
