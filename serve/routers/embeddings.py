"""POST /embeddings: OpenAI embeddings from an Embeddings deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.context import get_stack
from serve.protocol.vector_io import EmbeddingRequest

router = APIRouter(tags=["embeddings"])


@router.post("/embeddings")
async def create_embeddings(body: EmbeddingRequest) -> dict[str, Any]:
    return await get_stack().embeddings(body.model).embeddings.remote(body)
