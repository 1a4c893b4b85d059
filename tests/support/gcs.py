"""A GCS JSON API on loopback (gcp-storage-emulator, in memory) for gcsfs to talk to."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gcp_storage_emulator.server import create_server

from connectors.gcs.actions import filesystem


@dataclass
class GcsEmulator:
    url: str

    def filesystem(self) -> Any:
        """A gcsfs client of its own, for tests to put objects in place."""
        return filesystem(token="anon", endpoint_url=self.url, project="test")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def gcs_emulator() -> Iterator[GcsEmulator]:
    # Its threaded server logs a BrokenPipeError traceback when a client hangs up early; harmless.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="tendril-test")
    server.start()
    try:
        yield GcsEmulator(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
