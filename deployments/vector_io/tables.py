"""Tables of the files and vector-store services (registered on the shared metadata)."""

from __future__ import annotations

import sqlalchemy as sa

from serve.storage.sql import METADATA, Str, owner_column

files = sa.Table(
    "files", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    owner_column(),
    sa.Column("filename", Str(1024), nullable=False),
    sa.Column("purpose", Str(32), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
)

vector_stores = sa.Table(
    "vector_stores", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(256), unique=True, nullable=False),
    owner_column(),
    sa.Column("name", Str(1024)),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("last_active_at", sa.Integer, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("expires_after", sa.JSON),
    sa.Column("embedding_model", Str(256), nullable=False),
    sa.Column("embedding_dimension", sa.Integer, nullable=False),
    sa.Column("chunking", sa.JSON, nullable=False),
    sa.Column("index_config", sa.JSON, nullable=False),
    sa.Column("provider_id", Str(128), nullable=False),
    # replicas keep in-memory indexes in sync by comparing these with what they loaded
    sa.Column("add_version", sa.Integer, nullable=False, default=0),
    sa.Column("del_version", sa.Integer, nullable=False, default=0),
)

vector_store_files = sa.Table(
    "vector_store_files", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("vector_store_id", Str(256), nullable=False, index=True),
    sa.Column("file_id", Str(64), nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("status", Str(16), nullable=False),
    sa.Column("last_error", sa.JSON),
    sa.Column("attributes", sa.JSON, nullable=False, default=dict),
    sa.Column("chunking", sa.JSON, nullable=False),
    sa.Column("usage_bytes", sa.BigInteger, nullable=False, default=0),
    sa.Column("batch_id", Str(64)),
    # the replica ingesting the file renews its lease; an in_progress file whose lease ran out (its replica died)
    # is ingested again by another
    sa.Column("runner", Str(128)),
    sa.Column("lease_until", sa.Float, nullable=False, server_default="0"),
    sa.UniqueConstraint("vector_store_id", "file_id"),
    sqlite_autoincrement=True,  # seq identifies one attachment (ingestion); sqlite would reuse a deleted max rowid
)

chunks = sa.Table(
    "chunks", METADATA,
    # the FAISS id of the chunk (int64); sqlite only autoincrements an INTEGER primary key (its 64-bit rowid)
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("vector_store_id", Str(256), nullable=False),
    sa.Column("file_id", Str(256), nullable=False),
    sa.Column("chunk_index", sa.Integer, nullable=False),
    sa.Column("text", Str(), nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=False),  # float32 bytes
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    # Llama Stack's chunk id and backend chunk_metadata, for chunks inserted through /vector-io/insert with them
    sa.Column("chunk_id", Str(256)),
    sa.Column("chunk_metadata", sa.JSON),
    sa.Index("ix_chunks_store_seq", "vector_store_id", "seq"),
    sa.Index("ix_chunks_store_file", "vector_store_id", "file_id"),
)

file_batches = sa.Table(
    "vector_store_file_batches", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    sa.Column("vector_store_id", Str(256), nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False, default=False),
)
