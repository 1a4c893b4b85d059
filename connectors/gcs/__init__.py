"""Google Cloud Storage folders as file connections: the folder a connection may read, and the
filesystem that reads it (gcsfs)."""

from connectors.gcs.actions import GcsRoot, OutsideRoot, filesystem

__all__ = ["GcsRoot", "OutsideRoot", "filesystem"]
