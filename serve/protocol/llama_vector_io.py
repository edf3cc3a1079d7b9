"""Llama Stack 0.2 vector-io responses: vector DBs, chunk queries and rag-tool queries."""

from __future__ import annotations

from typing import Literal

from serve.protocol.llama_common import InterleavedContent, LlamaObject, Metadata


class VectorDB(LlamaObject):
    identifier: str
    provider_id: str
    provider_resource_id: str | None = None
    type: Literal["vector_db"]
    embedding_model: str
    embedding_dimension: int


class ListVectorDBsResponse(LlamaObject):
    data: list[VectorDB]


class Chunk(LlamaObject):
    content: InterleavedContent
    metadata: Metadata
    embedding: list[float] | None = None
    # later Llama Stack versions' fields, sent when the chunk was inserted with them (0.2.12 clients ignore them)
    stored_chunk_id: str | None = None
    chunk_metadata: Metadata | None = None


class QueryChunksResponse(LlamaObject):
    chunks: list[Chunk]
    scores: list[float]


class RAGQueryResult(LlamaObject):
    content: InterleavedContent | None = None
    metadata: Metadata
