"""OpenAI Files: upload (multipart), list, retrieve, content, delete."""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response

from serve.context import get_stack

router = APIRouter(tags=["files"])


@router.post("/files")
async def upload_file(file: UploadFile = File(...), purpose: str = Form(...)) -> dict[str, Any]:
    data = await file.read()
    return await get_stack().vector_io().create_file.remote(file.filename or "upload", purpose, data)


@router.get("/files")
async def list_files(purpose: str | None = None, after: str | None = None, limit: int = Query(10000, ge=1),
                     order: str = "desc") -> dict[str, Any]:
    # OpenAI's files list defaults to 10,000 items per page; our paginator caps pages at 100.
    return await get_stack().vector_io().list_files.remote(purpose, after, min(limit, 100), order)


@router.get("/files/{file_id}")
async def get_file(file_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().get_file.remote(file_id)


@router.get("/files/{file_id}/content")
async def file_content(file_id: str) -> Response:
    filename, data = await get_stack().vector_io().file_content.remote(file_id)
    media = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return Response(content=data, media_type=media)


@router.delete("/files/{file_id}")
async def delete_file(file_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().delete_file.remote(file_id)
