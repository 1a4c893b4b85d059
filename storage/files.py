"""Where uploaded bytes live: one fsspec filesystem, chosen by one URL (`TENDRIL_FILES_URL`).

A folder under the data dir on one machine; `gs://bucket/prefix` or `s3://bucket/prefix` when
several replicas must share files. Uploads stream through in chunks (never whole in memory), are
checked against their declared text encoding on the way, and get a sparse line index beside them
so a chunk of lines deep in a big file is one seek away instead of a scan.

Objects are written under a fresh key and only then recorded, so a failed upload leaves the
previous content untouched; the caller deletes the old objects once the new ones are recorded.
"""

from __future__ import annotations

import codecs
import os
import uuid
from array import array
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

import anyio
import anyio.to_thread
import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

# The index records how many newlines precede each block of this many bytes.
INDEX_BLOCK_BYTES = 256 * 1024
_READ_BYTES = 64 * 1024


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload is larger than {limit} bytes")
        self.limit = limit


class BadEncoding(Exception):
    """The content is not what its declared encoding says; the message says where."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str  # path of the content object, relative to the store's root
    size: int
    total_lines: int


def _line_count(size: int, newlines: int, ends_with_newline: bool) -> int:
    return newlines + (1 if size and not ends_with_newline else 0)


class _Indexer:
    """Counts newlines per fixed block as the bytes go by; checks the text encoding."""

    def __init__(self, encoding: str | None) -> None:
        self.block_newlines = array("Q", [0])  # newlines before block i
        self.size = 0
        self.newlines = 0
        self.last_byte = b""
        self._decoder = codecs.getincrementaldecoder(encoding)("strict") if encoding else None
        self._encoding = encoding

    def feed(self, chunk: bytes) -> None:
        if self._decoder is not None:
            held = len(self._decoder.getstate()[0])  # bytes of an unfinished character, kept back
            try:
                self._decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                self._bad_encoding(chunk, exc.start - held)
        view, start = memoryview(chunk), 0
        while start < len(chunk):
            room = INDEX_BLOCK_BYTES - self.size % INDEX_BLOCK_BYTES
            part = view[start : start + room]
            self.newlines += bytes(part).count(b"\n")
            self.size += len(part)
            start += len(part)
            if self.size % INDEX_BLOCK_BYTES == 0:
                self.block_newlines.append(self.newlines)
        if chunk:
            self.last_byte = chunk[-1:]

    def finish(self) -> None:
        if self._decoder is not None:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise BadEncoding(
                    f"content is not valid {self._encoding}: it ends inside a character "
                    f"(byte {self.size}, line {self.newlines + 1})"
                ) from None

    def _bad_encoding(self, chunk: bytes, at: int) -> None:
        position = max(self.size + at, 0)  # `at` < 0: the bad character began in an earlier chunk
        line = self.newlines + chunk[: max(at, 0)].count(b"\n") + 1
        raise BadEncoding(
            f"content is not valid {self._encoding}: bad byte at offset {position} (line {line})"
        )


class FileStore:
    def __init__(self, url: str, **storage_options: Any) -> None:
        """`storage_options` go to the filesystem (for gs://: token, endpoint_url, project)."""
        if url.startswith("gs://"):
            # gcsfs's core class: its 2026 default (Extended) first asks a gRPC control API about
            # every bucket, which standard buckets do not need and emulators do not serve.
            from gcsfs.core import GCSFileSystem

            fs: AbstractFileSystem = GCSFileSystem(**storage_options)
            root = url.removeprefix("gs://")
        else:
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        if isinstance(fs, LocalFileSystem):  # uploads are the owners' data: this user's only
            fs.makedirs(self.root, exist_ok=True)
            os.chmod(self.root, 0o700)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _make_private(self, folder: str, *paths: str) -> None:
        """The folder (made if missing) and these files exist, readable by this user only, when the
        files live on this machine's disk (other filesystems have their own access control)."""
        self.fs.makedirs(folder, exist_ok=True)
        if not isinstance(self.fs, LocalFileSystem):
            return
        os.chmod(folder, 0o700)
        for path in paths:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)

    async def save(
        self, prefix: str, chunks: AsyncIterator[bytes], *, max_bytes: int, encoding: str | None
    ) -> StoredFile:
        """Stream `chunks` to a new object under `prefix`; raises UploadTooLarge or BadEncoding
        (after removing what was written)."""
        key = f"{prefix}/{uuid.uuid4().hex}"
        path = self._path(key)
        indexer = _Indexer(encoding)
        await anyio.to_thread.run_sync(self._make_private, self._path(prefix), path)
        handle: Any = await anyio.to_thread.run_sync(self.fs.open, path, "wb")
        try:
            async for chunk in chunks:
                if indexer.size + len(chunk) > max_bytes:
                    raise UploadTooLarge(max_bytes)
                indexer.feed(chunk)
                await anyio.to_thread.run_sync(handle.write, chunk)
            indexer.finish()
            await anyio.to_thread.run_sync(handle.close)
            total = _line_count(indexer.size, indexer.newlines, indexer.last_byte == b"\n")
            await anyio.to_thread.run_sync(self._make_private, self._path(prefix), path + ".lines")
            await anyio.to_thread.run_sync(
                self.fs.pipe_file, path + ".lines", indexer.block_newlines.tobytes()
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(handle.close)
                await self.delete(key)
            raise
        return StoredFile(key, indexer.size, total)

    async def delete(self, key: str) -> None:
        for path in (self._path(key), self._path(key) + ".lines"):
            with suppress(FileNotFoundError):
                await anyio.to_thread.run_sync(self.fs.rm_file, path)

    async def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (end past the size is clipped)."""
        return await anyio.to_thread.run_sync(read_range, self.fs, self._path(key), start, end)

    async def read_lines(self, key: str, offset: int, limit: int | None) -> bytes:
        """Lines [offset, offset + limit) as bytes, line ends kept; found through the index."""

        def work() -> bytes:
            index = array("Q")
            index.frombytes(cast(bytes, self.fs.cat_file(self._path(key) + ".lines")))
            return read_lines(self.fs, self._path(key), offset, limit, index)

        return await anyio.to_thread.run_sync(work)


def read_range(fs: AbstractFileSystem, path: str, start: int, end: int) -> bytes:
    handle: Any
    with fs.open(path, "rb") as handle:
        handle.seek(start)
        return bytes(handle.read(max(end - start, 0)))


def read_lines(
    fs: AbstractFileSystem, path: str, offset: int, limit: int | None, index: array[int] | None = None
) -> bytes:
    """Lines [offset, offset + limit) of `path` (blocking). With an index (newlines before each
    INDEX_BLOCK_BYTES block) it seeks to the block holding the line; without one it scans."""
    block = 0
    if offset and index is not None:
        # The last block that starts before the offset-th newline: the line begins inside it.
        low, high = 0, len(index) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if index[middle] < offset:
                low = middle
            else:
                high = middle - 1
        block = low
    skip = offset - (index[block] if index is not None else 0)
    handle: Any
    with fs.open(path, "rb", block_size=_READ_BYTES) as handle:
        handle.seek(block * INDEX_BLOCK_BYTES)
        pending = b""
        while skip:
            data = handle.read(INDEX_BLOCK_BYTES)
            if not data:
                return b""
            parts = (pending + data).split(b"\n", skip)
            skip -= len(parts) - 1
            pending = parts[-1] if skip == 0 else b""
        return _take_lines(handle, pending, limit)


def _take_lines(handle: Any, pending: bytes, limit: int | None) -> bytes:
    if limit is None:
        return pending + handle.read()
    out, found = bytearray(), 0
    data = pending
    while True:
        cut = _nth_newline_end(data, limit - found)
        if cut is not None:
            out += data[:cut]
            return bytes(out)
        out += data
        found += data.count(b"\n")
        data = handle.read(_READ_BYTES)
        if not data:
            return bytes(out)


def _nth_newline_end(data: bytes, n: int) -> int | None:
    """Index just past the n-th newline in `data`, or None when it has fewer."""
    if n <= 0:
        return 0
    position = -1
    for _ in range(n):
        position = data.find(b"\n", position + 1)
        if position < 0:
            return None
    return position + 1
