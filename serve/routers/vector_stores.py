"""OpenAI Vector Stores: stores, their files, file batches and search."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from serve.context import get_stack
from serve.protocol.vector_io import (
    AttachFileRequest,
    CreateVectorStoreRequest,
    FileBatchRequest,
    SearchRequest,
    UpdateFileRequest,
    UpdateVectorStoreRequest,
)

router = APIRouter(tags=["vector_stores"])

Limit = Query(20, ge=1, le=100)


async def _stores(method: str, *args: Any) -> Any:
    return await get_stack().vector_io_handle().call.remote("stores", method, *args)


@router.post("/vector_stores")
async def create_store(body: CreateVectorStoreRequest) -> dict[str, Any]:
    return await _stores("create_store", body)


@router.get("/vector_stores")
async def list_stores(after: str | None = None, before: str | None = None, limit: int = Limit,
                      order: str = "desc") -> dict[str, Any]:
    return await _stores("list_stores", after, before, limit, order)


@router.get("/vector_stores/{store_id}")
async def get_store(store_id: str) -> dict[str, Any]:
    return await _stores("get_store", store_id)


@router.post("/vector_stores/{store_id}")
async def update_store(store_id: str, body: UpdateVectorStoreRequest) -> dict[str, Any]:
    return await _stores("update_store", store_id, body)


@router.delete("/vector_stores/{store_id}")
async def delete_store(store_id: str) -> dict[str, Any]:
    return await _stores("delete_store", store_id)


@router.post("/vector_stores/{store_id}/search")
async def search(store_id: str, body: SearchRequest) -> dict[str, Any]:
    return await _stores("search", store_id, body)


@router.post("/vector_stores/{store_id}/files")
async def attach_file(store_id: str, body: AttachFileRequest) -> dict[str, Any]:
    return await _stores("attach_file", store_id, body)


@router.get("/vector_stores/{store_id}/files")
async def list_store_files(store_id: str, after: str | None = None, before: str | None = None, limit: int = Limit,
                           order: str = "desc", filter: str | None = None) -> dict[str, Any]:
    return await _stores("list_files", store_id, filter, after, before, limit, order)


@router.get("/vector_stores/{store_id}/files/{file_id}")
async def get_store_file(store_id: str, file_id: str) -> dict[str, Any]:
    return await _stores("get_file", store_id, file_id)


@router.post("/vector_stores/{store_id}/files/{file_id}")
async def update_store_file(store_id: str, file_id: str, body: UpdateFileRequest) -> dict[str, Any]:
    return await _stores("update_file", store_id, file_id, body.attributes)


@router.get("/vector_stores/{store_id}/files/{file_id}/content")
async def store_file_content(store_id: str, file_id: str) -> dict[str, Any]:
    return await _stores("file_content", store_id, file_id)


@router.delete("/vector_stores/{store_id}/files/{file_id}")
async def delete_store_file(store_id: str, file_id: str) -> dict[str, Any]:
    return await _stores("delete_file", store_id, file_id)


@router.post("/vector_stores/{store_id}/file_batches")
async def create_batch(store_id: str, body: FileBatchRequest) -> dict[str, Any]:
    return await _stores("create_batch", store_id, body)


@router.get("/vector_stores/{store_id}/file_batches/{batch_id}")
async def get_batch(store_id: str, batch_id: str) -> dict[str, Any]:
    return await _stores("get_batch", store_id, batch_id)


@router.post("/vector_stores/{store_id}/file_batches/{batch_id}/cancel")
async def cancel_batch(store_id: str, batch_id: str) -> dict[str, Any]:
    return await _stores("cancel_batch", store_id, batch_id)


@router.get("/vector_stores/{store_id}/file_batches/{batch_id}/files")
async def list_batch_files(store_id: str, batch_id: str, after: str | None = None, before: str | None = None,
                           limit: int = Limit, order: str = "desc", filter: str | None = None) -> dict[str, Any]:
    await _stores("get_batch", store_id, batch_id)  # 404 for an unknown batch
    return await _stores("list_files", store_id, filter, after, before, limit, order, batch_id)
