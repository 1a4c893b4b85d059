"""GCS buckets through gcsfs (no FUSE mount): listing and reading objects under one subroot.

A connection names `gs://bucket` or `gs://bucket/sub/root`; every path an agent or a REST caller
gives is an object name inside that root, taken as it is (a `%` in a name is just a character: the
edges decode their URLs once), and anything that would leave the root (`..` segments, absolute
paths, another bucket) is refused before gcsfs sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connectors import Connector

connector = Connector.load(__file__)

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


class OutsideRoot(ValueError):
    """The path would leave the connection's bucket folder."""


@dataclass(frozen=True, slots=True)
class GcsRoot:
    bucket: str
    subroot: str  # "" for the whole bucket, else "a/b" (no leading or trailing slash)

    @classmethod
    def parse(cls, url: Any) -> GcsRoot:
        """`gs://bucket` or `gs://bucket/sub/root`; raises ValueError saying what is wrong."""
        if not isinstance(url, str) or not url.startswith("gs://"):
            raise ValueError("gcs_url must look like gs://bucket-name or gs://bucket-name/path/to/subroot")
        bucket, _, rest = url[len("gs://") :].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(f"'{bucket}' is not a valid GCS bucket name")
        segments = [s for s in rest.split("/") if s]
        if any(s in (".", "..") or "%" in s or "\\" in s for s in segments):
            raise ValueError("gcs_url subroot may not contain '.', '..', '%' or backslashes")
        return cls(bucket, "/".join(segments))

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.subroot}".rstrip("/")

    @property
    def prefix(self) -> str:
        """The gcsfs path of the root folder: `bucket` or `bucket/sub/root`."""
        return f"{self.bucket}/{self.subroot}".rstrip("/")

    def resolve(self, relative: str) -> str:
        """The gcsfs path of the object named `relative` inside the root; raises OutsideRoot."""
        if "\x00" in relative:
            raise OutsideRoot("path may not contain NUL")
        if relative.startswith(("/", "gs://")):
            raise OutsideRoot("path must be relative to the connection's folder")
        if not relative:
            return self.prefix
        if any(part in ("", ".", "..") for part in relative.rstrip("/").split("/")):
            raise OutsideRoot("path may not contain '..', '.' or empty segments")
        return f"{self.prefix}/{relative}"

    def relative(self, full: str) -> str:
        """Inverse of resolve for a gcsfs path under the root."""
        return full[len(self.prefix) :].lstrip("/")


def filesystem(
    *, token: str | dict[str, str], endpoint_url: str | None = None, project: str | None = None
) -> Any:
    """A gcsfs filesystem, with the server's token setting or a service-account key's fields. The
    core class on purpose: gcsfs 2026's default (Extended) class asks a gRPC control API about
    every bucket first, which emulators and many proxies do not serve."""
    from gcsfs.core import GCSFileSystem

    return GCSFileSystem(project=project or "tendril", token=token, endpoint_url=endpoint_url)
