"""OpenAI Files: upload (multipart), list, retrieve, content, delete.

Bytes stream between the client and the blob store here in the ingress (serve/file_blobs.py); the VectorIO
deployment, which owns the file rows, only sees metadata."""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from serve.context import get_stack
from serve.errors import APIError, unwrap
from serve.file_blobs import blob_key, check_purpose, open_blob, store_upload
from serve.ids import new_id
from serve.protocol.openai_files import FileDeleted, FileList, FileObject, RegisterFileRequest

router = APIRouter(tags=["files"])


@router.post("/files", response_model=FileObject)
async def upload_file(file: UploadFile = File(...), purpose: str = Form(...)) -> dict[str, Any]:
    stack = get_stack()
    files = stack.vector_io()  # 404 before any byte moves when the config leaves VectorIO out
    check_purpose(purpose)
    file_id = new_id("file", "-")
    # Starlette has spooled the upload to a temporary file (in memory up to 1 MiB); it streams on into the store
    size = await store_upload(stack.blobs, blob_key(file_id), file.file, stack.config.vector_io.max_file_bytes)
    try:
        return await files.register_file.remote(RegisterFileRequest(
            file_id=file_id, filename=file.filename or "upload", purpose=purpose, bytes=size))
    except Exception as e:
        if isinstance(unwrap(e), APIError):  # refused, so no row points at the bytes: drop them
            await asyncio.to_thread(stack.blobs.delete, blob_key(file_id))
        raise  # else (a lost replica, say) the row may exist: better unreferenced bytes than a row without them


@router.get("/files", response_model=FileList)
async def list_files(purpose: str | None = None, after: str | None = None, limit: int = Query(10000, ge=1),
                     order: str = "desc") -> dict[str, Any]:
    # OpenAI's files list defaults to 10,000 items per page; our paginator caps pages at 100.
    return await get_stack().vector_io().list_files.remote(purpose, after, min(limit, 100), order)


@router.get("/files/{file_id}", response_model=FileObject)
async def get_file(file_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().get_file.remote(file_id)


@router.get("/files/{file_id}/content")
async def file_content(file_id: str) -> StreamingResponse:
    stack = get_stack()
    blob = await stack.vector_io().file_blob.remote(file_id)  # 404 for a missing file or another principal's
    media = mimetypes.guess_type(blob.filename)[0] or "application/octet-stream"
    return StreamingResponse(await open_blob(stack.blobs, blob.blob_key), media_type=media,
                             headers={"content-length": str(blob.bytes)})


@router.delete("/files/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().delete_file.remote(file_id)
