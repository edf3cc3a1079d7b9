"""Llama Stack 0.2 routes on the same stores: vector-dbs, vector-io insert/query, rag-tool insert/query."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.context import get_stack
from serve.protocol.llama_vector_io import ListVectorDBsResponse, QueryChunksResponse, RAGQueryResult, VectorDB
from serve.protocol.openapi_bodies import NULL_BODY, AsWrittenRoute
from serve.protocol.vector_io import (
    InsertChunksRequest,
    QueryChunksRequest,
    RagInsertRequest,
    RagQueryRequest,
    RegisterVectorDBRequest,
)

router = APIRouter(route_class=AsWrittenRoute, tags=["vector_io"])


@router.post("/vector-dbs", response_model=VectorDB)
async def register_vector_db(body: RegisterVectorDBRequest) -> dict[str, Any]:
    return await get_stack().vector_io().register_vector_db.remote(body)


@router.get("/vector-dbs", response_model=ListVectorDBsResponse)
async def list_vector_dbs() -> dict[str, Any]:
    return {"data": await get_stack().vector_io().list_vector_dbs.remote()}


@router.get("/vector-dbs/{vector_db_id:path}", response_model=VectorDB)
async def get_vector_db(vector_db_id: str) -> dict[str, Any]:
    return await get_stack().vector_io().get_vector_db.remote(vector_db_id)


@router.delete("/vector-dbs/{vector_db_id:path}", responses=NULL_BODY)
async def unregister_vector_db(vector_db_id: str) -> None:
    await get_stack().vector_io().unregister_vector_db.remote(vector_db_id)


@router.post("/vector-io/insert", responses=NULL_BODY)
async def insert_chunks(body: InsertChunksRequest) -> None:
    await get_stack().vector_io().insert_chunks.remote(body)


@router.post("/vector-io/query", response_model=QueryChunksResponse)
async def query_chunks(body: QueryChunksRequest) -> dict[str, Any]:
    return await get_stack().vector_io().query_chunks.remote(body)


@router.post("/tool-runtime/rag-tool/insert", responses=NULL_BODY)
async def rag_insert(body: RagInsertRequest) -> None:
    await get_stack().vector_io().rag_insert.remote(body)


@router.post("/tool-runtime/rag-tool/query", response_model=RAGQueryResult)
async def rag_query(body: RagQueryRequest) -> dict[str, Any]:
    return await get_stack().vector_io().rag_query.remote(body)
