"""OpenAI Batch API: create, list (cursor pagination), retrieve, cancel; run by the Batches deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from serve.context import get_stack
from serve.protocol.batches import CreateBatchRequest

router = APIRouter(tags=["batches"])


@router.post("/batches")
async def create_batch(body: CreateBatchRequest) -> dict[str, Any]:
    return await get_stack().batches().create_batch.remote(body)


@router.get("/batches")
async def list_batches(after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    return await get_stack().batches().list_batches.remote(after, limit)


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str) -> dict[str, Any]:
    return await get_stack().batches().get_batch.remote(batch_id)


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str) -> dict[str, Any]:
    return await get_stack().batches().cancel_batch.remote(batch_id)
