"""The one storage layer: SQL tables (sqlite embedded, any SQLAlchemy URL on clusters) plus a blob store."""

from serve.storage.blobs import BlobStore
from serve.storage.sql import Database, default_database_url

__all__ = ["BlobStore", "Database", "default_database_url"]
