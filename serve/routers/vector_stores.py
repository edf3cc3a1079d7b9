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


@router.post("/vector_stores")
async def create_store(body: CreateVectorStoreRequest) -> dict[str, Any]:
    return await get_stack().vector_io().create_vector_store.remote(body)


@router.get("/vector_stores")
async def list_stores(after: str | None = None, before: str | None = None, limit: int = Limit,
                      order: str = "desc") -> dict[str, Any]:
    return await get_stack().vector_io().list_vector_stores.remote(after, before, limit, order)


@router.get("/vector_stores/{store_id}")
async def get_store(store_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().get_vector_store.remote(store_id)


@router.post("/vector_stores/{store_id}")
async def update_store(store_id: str, body: UpdateVectorStoreRequest) -> dict[str, Any]:
    return await get_stack().vector_io().update_vector_store.remote(store_id, body)


@router.delete("/vector_stores/{store_id}")
async def delete_store(store_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().delete_vector_store.remote(store_id)


@router.post("/vector_stores/{store_id}/search")
async def search(store_id: str, body: SearchRequest) -> dict[str, Any]:
    return await get_stack().vector_io().search_vector_store.remote(store_id, body)


@router.post("/vector_stores/{store_id}/files")
async def attach_file(store_id: str, body: AttachFileRequest) -> dict[str, Any]:
    return await get_stack().vector_io().attach_file.remote(store_id, body)


@router.get("/vector_stores/{store_id}/files")
async def list_store_files(store_id: str, after: str | None = None, before: str | None = None, limit: int = Limit,
                           order: str = "desc", filter: str | None = None) -> dict[str, Any]:
    return await get_stack().vector_io().list_vector_store_files.remote(store_id, filter, after, before, limit,
                                                                       order)


@router.get("/vector_stores/{store_id}/files/{file_id}")
async def get_store_file(store_id: str, file_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().get_vector_store_file.remote(store_id, file_id)


@router.post("/vector_stores/{store_id}/files/{file_id}")
async def update_store_file(store_id: str, file_id: str, body: UpdateFileRequest) -> dict[str, Any]:
    return await get_stack().vector_io().update_vector_store_file.remote(store_id, file_id, body.attributes)


@router.get("/vector_stores/{store_id}/files/{file_id}/content")
async def store_file_content(store_id: str, file_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().vector_store_file_content.remote(store_id, file_id)


@router.delete("/vector_stores/{store_id}/files/{file_id}")
async def delete_store_file(store_id: str, file_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().delete_vector_store_file.remote(store_id, file_id)


@router.post("/vector_stores/{store_id}/file_batches")
async def create_batch(store_id: str, body: FileBatchRequest) -> dict[str, Any]:
    return await get_stack().vector_io().create_file_batch.remote(store_id, body)


@router.get("/vector_stores/{store_id}/file_batches/{batch_id}")
async def get_batch(store_id: str, batch_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().get_file_batch.remote(store_id, batch_id)


@router.post("/vector_stores/{store_id}/file_batches/{batch_id}/cancel")
async def cancel_batch(store_id: str, batch_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().cancel_file_batch.remote(store_id, batch_id)


@router.get("/vector_stores/{store_id}/file_batches/{batch_id}/files")
async def list_batch_files(store_id: str, batch_id: str, after: str | None = None, before: str | None = None,
                           limit: int = Limit, order: str = "desc", filter: str | None = None) -> dict[str, Any]:
    vector_io = get_stack().vector_io()
    await vector_io.get_file_batch.remote(store_id, batch_id)  # 404 for an unknown batch
    return await vector_io.list_vector_store_files.remote(store_id, filter, after, before, limit, order, batch_id)
