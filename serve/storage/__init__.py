"""The one storage layer: SQL tables (sqlite embedded, any SQLAlchemy URL on clusters) plus a blob store."""

from serve.storage.blob_url import open_blob_store
from serve.storage.blobs import BlobStore, LocalBlobStore
from serve.storage.sql import Database, default_database_url

__all__ = ["BlobStore", "Database", "LocalBlobStore", "default_database_url", "open_blob_store"]
