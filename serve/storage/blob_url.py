"""Which blob store a URL names (config `storage.blob_url`, or STACKSERVE_BLOB_URL):

- a path or `file:///path`: a local directory (the default: the data directory, so existing data keeps working);
- `sql`: the state database itself (sqlite or PostgreSQL, `storage.url`); a SQLAlchemy URL (`sqlite:///...`,
  `postgresql://...`): blobs in that database instead;
- anything else with a scheme (`s3://bucket/prefix`, `gs://...`, `memory://...`): an fsspec filesystem.
"""

from __future__ import annotations

from pathlib import Path

from serve.storage.blob_fsspec import FsspecBlobStore
from serve.storage.blob_sql import SqlBlobStore
from serve.storage.blobs import BlobStore, LocalBlobStore
from serve.storage.sql import Database

SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


def open_blob_store(url: str, state_db: Database | str | None = None) -> BlobStore:
    """The store `url` names; `state_db` is the state database that `sql` refers to (an open Database, or its URL:
    then it is opened only if `url` is `sql`)."""
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if url in ("sql", "sql://"):
        if state_db is None:
            raise ValueError("blob_url 'sql' needs the state database")
        return SqlBlobStore(Database(state_db) if isinstance(state_db, str) else state_db)
    if scheme in SQL_SCHEMES:
        return SqlBlobStore(Database(url))
    if scheme == "file":
        return LocalBlobStore(Path(url.removeprefix("file://")).expanduser())
    if scheme:
        return FsspecBlobStore(url)
    return LocalBlobStore(Path(url).expanduser())
