"""The Files service: OpenAI file objects in SQL, their bytes in the blob store."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from deployments.vector_io.tables import files
from serve.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from serve.ids import new_id
from serve.pagination import paginate
from serve.storage import BlobStore, Database
from serve.storage.sql import owned, owner

PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
SYSTEM_PURPOSES = {"batch_output"}  # files the server writes (batch results); not accepted as uploads


def blob_key(file_id: str) -> str:
    """Where a file's bytes live in the blob store (files/<id>: under the data directory, where they always were)."""
    return f"files/{file_id}"


def file_object(row: Any) -> dict[str, Any]:
    return {"id": row.id, "object": "file", "bytes": row.bytes, "created_at": row.created_at,
            "filename": row.filename, "purpose": row.purpose, "status": "processed", "expires_at": None,
            "status_details": None}


class FileService:
    def __init__(self, db: Database, blobs: BlobStore, max_bytes: int):
        """`blobs`: the graph's blob store (serve/storage/blob_url.py), shared with the other deployments."""
        self.db = db
        self.blobs = blobs
        self.max_bytes = max_bytes

    def create(self, filename: str, purpose: str, data: bytes, system: bool = False) -> dict[str, Any]:
        if purpose not in PURPOSES and not (system and purpose in SYSTEM_PURPOSES):
            raise InvalidRequestError(f"purpose must be one of {', '.join(sorted(PURPOSES))}", param="purpose")
        if len(data) > self.max_bytes:
            raise PayloadTooLargeError(f"file of {len(data)} bytes exceeds the limit of {self.max_bytes} bytes",
                                       param="file", code="file_too_large")
        if not data:
            raise InvalidRequestError("the file is empty", param="file")
        name = (filename or "upload").replace("/", "_").replace("\\", "_").replace("\x00", "")[-255:] or "upload"
        fid = new_id("file", "-")
        self.blobs.put(blob_key(fid), data)  # bytes first: a row never points at missing bytes
        with self.db.begin() as c:
            c.execute(files.insert().values(id=fid, owner=owner(), filename=name, purpose=purpose, bytes=len(data),
                                            created_at=int(time.time())))
        return self.get(fid)

    def _row(self, file_id: str) -> Any:
        return self.db.row_or_raise(files, file_id,
            NotFoundError(f"No file with id '{file_id}' found", param="file_id", code="file_not_found"))

    def get(self, file_id: str) -> dict[str, Any]:
        return file_object(self._row(file_id))

    def content(self, file_id: str) -> tuple[str, bytes]:
        row = self._row(file_id)
        return row.filename, self.blobs.get(blob_key(file_id))

    def list(self, purpose: str | None, after: str | None, limit: int, order: str) -> dict[str, Any]:
        q = sa.select(files).where(owned(files)).order_by(files.c.seq)
        if purpose:
            q = q.where(files.c.purpose == purpose)
        with self.db.connect() as c:
            rows = [file_object(r) for r in c.execute(q)]
        return paginate(rows, after=after, limit=limit, order=order)

    def delete(self, file_id: str) -> dict[str, Any]:
        self._row(file_id)
        with self.db.begin() as c:
            c.execute(files.delete().where(files.c.id == file_id))
        self.blobs.delete(blob_key(file_id))
        return {"id": file_id, "object": "file", "deleted": True}
