"""Llama Stack 0.2 routes on the same stores: vector-dbs, vector-io insert/query, rag-tool insert/query."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.context import get_stack
from serve.protocol.vector_io import (
    InsertChunksRequest,
    QueryChunksRequest,
    RagInsertRequest,
    RagQueryRequest,
    RegisterVectorDBRequest,
)

router = APIRouter(tags=["vector_io"])


@router.post("/vector-dbs")
async def register_vector_db(body: RegisterVectorDBRequest) -> dict[str, Any]:
    return await get_stack().vector_io().register_vector_db.remote(body)


@router.get("/vector-dbs")
async def list_vector_dbs() -> dict[str, Any]:
    return {"data": await get_stack().vector_io().list_vector_dbs.remote()}


@router.get("/vector-dbs/{vector_db_id:path}")
async def get_vector_db(vector_db_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().get_vector_db.remote(vector_db_id)


@router.delete("/vector-dbs/{vector_db_id:path}")
async def unregister_vector_db(vector_db_id: str) -> None:
    await get_stack().vector_io().unregister_vector_db.remote(vector_db_id)


@router.post("/vector-io/insert")
async def insert_chunks(body: InsertChunksRequest) -> None:
    await get_stack().vector_io().insert_chunks.remote(body)


@router.post("/vector-io/query")
async def query_chunks(body: QueryChunksRequest) -> dict[str, Any]:
    return await get_stack().vector_io().query_chunks.remote(body)


@router.post("/tool-runtime/rag-tool/insert")
async def rag_insert(body: RagInsertRequest) -> None:
    await get_stack().vector_io().rag_insert.remote(body)


@router.post("/tool-runtime/rag-tool/query")
async def rag_query(body: RagQueryRequest) -> dict[str, Any]:
    return await get_stack().vector_io().rag_query.remote(body)
