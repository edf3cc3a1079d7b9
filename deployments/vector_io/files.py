"""The Files service: OpenAI file objects in SQL, their bytes in the blob store (serve/file_blobs.py). Uploads
through the API arrive with their bytes already stored by the ingress (`register`); files the server writes itself
(batch results, Llama Stack documents) stream in through `create`."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from deployments.vector_io.tables import files
from serve.errors import InvalidRequestError, NotFoundError
from serve.file_blobs import blob_key, check_purpose, put_file
from serve.ids import new_id
from serve.pagination import paginate
from serve.protocol.openai_files import FileBlob, RegisterFileRequest
from serve.storage import BlobStore, Database
from serve.storage.blobs import Data
from serve.storage.sql import owned, owner


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

    def create(self, filename: str, purpose: str, data: Data, system: bool = False) -> dict[str, Any]:
        """A file from `data` (bytes, or an iterable of pieces, streamed into the blob store)."""
        check_purpose(purpose, system)
        fid = new_id("file", "-")
        size = put_file(self.blobs, blob_key(fid), data, self.max_bytes)  # bytes first: no row without its bytes
        return self._insert(fid, filename, purpose, size)

    def register(self, req: RegisterFileRequest) -> dict[str, Any]:
        """The row of an upload whose bytes the ingress has already stored under `blob_key(req.file_id)`."""
        check_purpose(req.purpose)
        if not self.blobs.exists(blob_key(req.file_id)):
            raise InvalidRequestError(f"the bytes of upload {req.file_id} are not in the blob store", param="file")
        return self._insert(req.file_id, req.filename, req.purpose, req.bytes)

    def _insert(self, fid: str, filename: str, purpose: str, size: int) -> dict[str, Any]:
        name = (filename or "upload").replace("/", "_").replace("\\", "_").replace("\x00", "")[-255:] or "upload"
        with self.db.begin() as c:
            c.execute(files.insert().values(id=fid, owner=owner(), filename=name, purpose=purpose, bytes=size,
                                            created_at=int(time.time())))
        return self.get(fid)

    def _row(self, file_id: str) -> Any:
        return self.db.row_or_raise(files, file_id,
            NotFoundError(f"No file with id '{file_id}' found", param="file_id", code="file_not_found"))

    def get(self, file_id: str) -> dict[str, Any]:
        return file_object(self._row(file_id))

    def content(self, file_id: str) -> tuple[str, bytes]:
        """(filename, the whole bytes): for readers that need them at once (text extraction, batch input)."""
        row = self._row(file_id)
        return row.filename, self.blobs.get(blob_key(file_id))

    def blob(self, file_id: str) -> FileBlob:
        """Where the file's bytes are, for a reader that streams them (the ingress's content download)."""
        row = self._row(file_id)
        return FileBlob(filename=row.filename, blob_key=blob_key(file_id), bytes=row.bytes)

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
