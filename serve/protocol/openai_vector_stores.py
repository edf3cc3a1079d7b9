"""Vector store response bodies: stores, their files, file batches, file content and search pages.

The stores carry Llama Stack's extensions (embedding model and dimension, provider) next to OpenAI's fields.
"""

from __future__ import annotations

from typing import Any, Literal

from serve.protocol.openai_common import DeletedObject, ListPage, OpenAIObject, omitted

FileStatus = Literal["in_progress", "completed", "cancelled", "failed"]


class FileCounts(OpenAIObject):
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    total: int


class ExpiresAfter(OpenAIObject):
    anchor: Literal["last_active_at"]
    days: int


class VectorStore(OpenAIObject):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str | None  # the document says string; a store created without a name has none (as OpenAI's)
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"]
    expires_after: ExpiresAfter | None = omitted()
    expires_at: int | None = None
    last_active_at: int | None
    metadata: dict[str, Any] | None
    # Llama Stack extensions
    embedding_model: str | None = omitted()
    embedding_dimension: int | None = omitted()
    provider_id: str | None = omitted()


class VectorStoreList(ListPage[VectorStore]):
    pass


class VectorStoreDeleted(DeletedObject):
    object: Literal["vector_store.deleted"] = "vector_store.deleted"


class FileError(OpenAIObject):
    code: Literal["server_error", "unsupported_file", "invalid_file"]
    message: str


class StaticChunking(OpenAIObject):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class ChunkingStrategy(OpenAIObject):
    type: Literal["static", "other"]
    static: StaticChunking | None = omitted()


class VectorStoreFile(OpenAIObject):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    usage_bytes: int
    created_at: int
    vector_store_id: str
    status: FileStatus
    last_error: FileError | None
    chunking_strategy: ChunkingStrategy | None = omitted()
    attributes: dict[str, str | int | float | bool] | None = None


class VectorStoreFileList(ListPage[VectorStoreFile]):
    pass


class VectorStoreFileDeleted(DeletedObject):
    object: Literal["vector_store.file.deleted"] = "vector_store.file.deleted"


class VectorStoreFileBatch(OpenAIObject):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts


class TextContent(OpenAIObject):
    type: Literal["text"] = "text"
    text: str


class VectorStoreFileContent(OpenAIObject):
    """OpenAI's content page, plus Llama Stack 0.2's fields (file_id, filename, attributes, content)."""

    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[TextContent]
    has_more: bool
    next_page: str | None = None
    file_id: str | None = omitted()
    filename: str | None = omitted()
    attributes: dict[str, Any] | None = omitted()
    content: list[TextContent] | None = omitted()


class SearchResult(OpenAIObject):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, str | int | float | bool] | None
    content: list[TextContent]


class VectorStoreSearchPage(OpenAIObject):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]  # OpenAI's document: a list of strings (Llama Stack 0.2 sends one string)
    data: list[SearchResult]
    has_more: bool
    next_page: str | None = None
