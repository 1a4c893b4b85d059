"""The file store: streamed uploads, encoding checks, and line chunks found through the index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import files
from storage.files import BadEncoding, FileStore, UploadTooLarge
from tests.support.gcs import GcsEmulator

pytestmark = pytest.mark.anyio


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileStore:
    monkeypatch.setattr(files, "INDEX_BLOCK_BYTES", 64)  # many blocks from a small file
    return FileStore(f"file://{tmp_path}/files")


def numbered(count: int) -> bytes:
    return b"".join(f"line {n} {'x' * (n % 13)}\n".encode() for n in range(count))


async def test_every_line_chunk_matches_a_plain_split(store: FileStore) -> None:
    data = numbered(300)
    saved = await store.save("c1", chunks(data, 11), max_bytes=10**6, encoding="utf-8")
    assert (saved.size, saved.total_lines) == (len(data), 300)
    lines = data.splitlines(keepends=True)
    for offset in (0, 1, 5, 63, 64, 65, 150, 299, 300, 400):
        for limit in (1, 3, 100, None):
            got = await store.read_lines(saved.key, offset, limit)
            want = b"".join(lines[offset : None if limit is None else offset + limit])
            assert got == want, (offset, limit)


async def test_a_last_line_without_newline_counts_and_ranges_clip(store: FileStore) -> None:
    saved = await store.save("c2", chunks(b"a\nb\nc"), max_bytes=100, encoding="utf-8")
    assert saved.total_lines == 3
    assert await store.read_lines(saved.key, 2, 5) == b"c"
    assert await store.read_range(saved.key, 2, 100) == b"b\nc"


async def test_bad_utf8_says_where_and_leaves_nothing(store: FileStore, tmp_path: Path) -> None:
    data = "naïve\nok\n".encode() + b"bad \xff here\n"
    with pytest.raises(BadEncoding, match=r"not valid utf-8: bad byte at offset 14 \(line 3\)"):
        await store.save("c3", chunks(data, 3), max_bytes=100, encoding="utf-8")
    assert list((tmp_path / "files" / "c3").iterdir()) == []


async def test_a_character_split_across_chunks_is_fine_and_a_cut_one_is_not(store: FileStore) -> None:
    data = "ééé€€€\n".encode()
    saved = await store.save("c4", chunks(data, 1), max_bytes=100, encoding="utf-8")
    assert await store.read_lines(saved.key, 0, None) == data
    with pytest.raises(BadEncoding, match="ends inside a character"):
        await store.save("c4", chunks(data[:-2]), max_bytes=100, encoding="utf-8")


async def test_too_large_stops_streaming_and_removes_the_partial_object(
    store: FileStore, tmp_path: Path
) -> None:
    with pytest.raises(UploadTooLarge):
        await store.save("c5", chunks(b"x" * 500, 50), max_bytes=120, encoding=None)
    assert list((tmp_path / "files" / "c5").iterdir()) == []


async def test_the_same_store_works_on_a_gcs_bucket(gcs: GcsEmulator) -> None:
    """gs://bucket/prefix: what several replicas share; the emulator stands in for GCS."""
    store = FileStore("gs://tendril-test/uploads", token="anon", endpoint_url=gcs.url, project="test")
    data = numbered(5000)
    saved = await store.save("c6", chunks(data, 70_000), max_bytes=10**7, encoding="utf-8")
    assert saved.total_lines == 5000
    lines = data.splitlines(keepends=True)
    assert await store.read_lines(saved.key, 4321, 3) == b"".join(lines[4321:4324])
    assert gcs.filesystem().exists(f"tendril-test/uploads/{saved.key}.lines")
    await store.delete(saved.key)
    assert not gcs.filesystem().exists(f"tendril-test/uploads/{saved.key}")
