"""Files, embeddings and vector stores: OpenAI request schemas, plus Llama Stack 0.2 vector-io/rag-tool ones."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class StaticChunking(_Lenient):
    max_chunk_size_tokens: int = Field(default=800, ge=100, le=4096)
    chunk_overlap_tokens: int = Field(default=400, ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> StaticChunking:
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens")
        return self


class ChunkingStrategy(_Lenient):
    type: Literal["auto", "static"] = "auto"
    static: StaticChunking | None = None

    @model_validator(mode="after")
    def _static(self) -> ChunkingStrategy:
        if self.type == "static" and self.static is None:
            raise ValueError("a static chunking_strategy needs a 'static' object")
        return self


Attributes = dict[str, str | int | float | bool]


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


def _expires_after(v: dict[str, Any] | None) -> dict[str, Any] | None:
    # validated here (the store echoes it back in every vector store object), kept a plain dict for the store
    return None if v is None else ExpiresAfter.model_validate(v).model_dump()


class CreateVectorStoreRequest(_Lenient):
    name: str | None = None
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: dict[str, str] | None = None
    expires_after: dict[str, Any] | None = None
    # Llama Stack extensions
    embedding_model: str | None = None
    embedding_dimension: int | None = None
    provider_id: str | None = None
    index: dict[str, Any] | None = None  # stackserve: per-store FAISS index override ({"type": "hnsw", ...})

    _check_expires_after = field_validator("expires_after")(_expires_after)


class UpdateVectorStoreRequest(_Lenient):
    name: str | None = None
    metadata: dict[str, str] | None = None
    expires_after: dict[str, Any] | None = None

    _check_expires_after = field_validator("expires_after")(_expires_after)


class AttachFileRequest(_Lenient):
    file_id: str
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class FileBatchRequest(_Lenient):
    file_ids: list[str] = Field(min_length=1, max_length=500)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class UpdateFileRequest(_Lenient):
    attributes: Attributes


class RankingOptions(_Lenient):
    ranker: str | None = None
    score_threshold: float = Field(default=0.0, ge=0.0, le=1.0)


class SearchRequest(_Lenient):
    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int = Field(default=10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False
    search_mode: Literal["vector", "keyword", "hybrid"] = "vector"

    @field_validator("query")
    @classmethod
    def _query(cls, v: str | list[str]) -> str | list[str]:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not any(q.strip() for q in v)):
            raise ValueError("query must not be empty")
        return v


class EmbeddingRequest(_Lenient):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


# ---- Llama Stack 0.2 ---------------------------------------------------------------------------------------------

class RegisterVectorDBRequest(_Lenient):
    vector_db_id: str = Field(min_length=1, max_length=256)
    embedding_model: str
    embedding_dimension: int | None = None
    provider_id: str | None = None
    provider_vector_db_id: str | None = None


class LlamaChunk(_Lenient):
    """A chunk as Llama Stack clients send it: 0.2.12 sends content, metadata and an optional precomputed embedding;
    later versions add an id (`stored_chunk_id`, or `chunk_id`) and backend `chunk_metadata`."""

    content: Any
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding: list[float] | None = None
    stored_chunk_id: str | None = Field(default=None, max_length=256)
    chunk_id: str | None = Field(default=None, max_length=256)
    chunk_metadata: dict[str, Any] | None = None


class InsertChunksRequest(_Lenient):
    vector_db_id: str
    chunks: list[LlamaChunk] = Field(min_length=1)
    ttl_seconds: int | None = None


class QueryChunksRequest(_Lenient):
    vector_db_id: str
    query: Any
    params: dict[str, Any] | None = None


class RagDocument(_Lenient):
    document_id: str
    content: Any
    mime_type: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class RagInsertRequest(_Lenient):
    documents: list[RagDocument] = Field(min_length=1)
    vector_db_id: str
    chunk_size_in_tokens: int = Field(default=512, ge=16, le=4096)


class RagQueryRequest(_Lenient):
    content: Any
    vector_db_ids: list[str] = Field(min_length=1)
    query_config: dict[str, Any] | None = None
