"""Blobs in the SQL database (sqlite or PostgreSQL): every replica on every node that reaches the database reaches
the bytes, with nothing else to provide.

A blob is a row of `blob_objects` naming a fresh `blob_id`, plus its bytes as ~1 MiB rows of `blob_chunks`. A put
inserts the chunks and points the key at them in one transaction: until it commits no reader sees any of it, and a
put that fails part way (its data raised) rolls back to nothing. Reads fetch one chunk per query, so neither side
holds a whole blob in memory. A reader holds the blob_id it started with; if a put replaces the key and deletes
those chunks mid-stream, the reader gets an error rather than a mix of two versions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

from serve.storage.blobs import CHUNK_BYTES, BlobStore, Data, check_key, chunks_of
from serve.storage.sql import Database, Str

BLOB_METADATA = sa.MetaData()  # created on whichever database the store opens (the state one, by default)

blob_objects = sa.Table(
    "blob_objects", BLOB_METADATA,
    sa.Column("key", Str(1024), primary_key=True),
    sa.Column("blob_id", Str(32), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

blob_chunks = sa.Table(
    "blob_chunks", BLOB_METADATA,
    sa.Column("blob_id", Str(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


def _pieces(data: Data, size: int) -> Iterator[bytes]:
    """`data` re-cut into pieces of exactly `size` bytes (the last one shorter), holding at most ~2 pieces."""
    buf = bytearray()
    for piece in chunks_of(data):
        buf += piece
        while len(buf) >= size:
            with memoryview(buf) as view:
                out = bytes(view[:size])  # one copy, no intermediate slice
            del buf[:size]
            yield out
    if buf:
        yield bytes(buf)


class SqlBlobStore(BlobStore):
    def __init__(self, db: Database, chunk_bytes: int = CHUNK_BYTES):
        self.db = db
        self.chunk_bytes = chunk_bytes
        db.create_tables(BLOB_METADATA)

    def __repr__(self) -> str:
        return f"SqlBlobStore({self.db.dialect})"

    def put(self, key: str, data: Data) -> None:
        check_key(key)
        blob_id, size = uuid.uuid4().hex, 0
        with self.db.begin() as c:
            for seq, piece in enumerate(_pieces(data, self.chunk_bytes)):
                c.execute(blob_chunks.insert().values(blob_id=blob_id, seq=seq, data=piece))
                size += len(piece)
            old = c.execute(sa.select(blob_objects.c.blob_id).where(blob_objects.c.key == key)
                            .with_for_update()).scalar()
            if old is not None:
                c.execute(blob_chunks.delete().where(blob_chunks.c.blob_id == old))
                c.execute(blob_objects.update().where(blob_objects.c.key == key)
                          .values(blob_id=blob_id, size=size, created_at=time.time()))
            else:
                c.execute(blob_objects.insert().values(key=key, blob_id=blob_id, size=size, created_at=time.time()))

    def _blob(self, key: str) -> tuple[str, int]:
        with self.db.connect() as c:
            row = c.execute(sa.select(blob_objects.c.blob_id, blob_objects.c.size)
                            .where(blob_objects.c.key == check_key(key))).first()
        if row is None:
            raise FileNotFoundError(f"no blob {key!r}")
        return row.blob_id, row.size

    def iter(self, key: str) -> Iterator[bytes]:
        blob_id, size = self._blob(key)
        return self._chunks(key, blob_id, size)

    def _chunks(self, key: str, blob_id: str, size: int) -> Iterator[bytes]:
        seq, seen = 0, 0
        while seen < size:
            with self.db.connect() as c:
                piece = c.execute(sa.select(blob_chunks.c.data).where(blob_chunks.c.blob_id == blob_id,
                                                                      blob_chunks.c.seq == seq)).scalar()
            if piece is None:
                raise FileNotFoundError(f"blob {key!r} was replaced or deleted while being read")
            seen += len(piece)
            seq += 1
            yield piece if isinstance(piece, bytes) else bytes(piece)  # psycopg returns memoryview

    def delete(self, key: str) -> None:
        with self.db.begin() as c:
            old = c.execute(sa.select(blob_objects.c.blob_id).where(blob_objects.c.key == check_key(key))
                            .with_for_update()).scalar()
            if old is not None:
                c.execute(blob_objects.delete().where(blob_objects.c.key == key))
                c.execute(blob_chunks.delete().where(blob_chunks.c.blob_id == old))

    def exists(self, key: str) -> bool:
        with self.db.connect() as c:
            return c.execute(sa.select(blob_objects.c.key).where(blob_objects.c.key == check_key(key))).first() \
                is not None

    def list(self, prefix: str = "") -> list[str]:
        q = sa.select(blob_objects.c.key).order_by(blob_objects.c.key)
        if prefix:
            q = q.where(blob_objects.c.key.startswith(prefix, autoescape=True))  # keys may hold % and _
        with self.db.connect() as c:
            # sqlite's LIKE ignores case, and a database's collation may sort differently: settle both here
            return sorted(k for k in c.execute(q).scalars() if k.startswith(prefix))
