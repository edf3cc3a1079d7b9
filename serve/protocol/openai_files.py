"""Files and embeddings response bodies (OpenAI's `OpenAIFile`, `ListFilesResponse`, `CreateEmbeddingResponse`)."""

from __future__ import annotations

from typing import Literal

from serve.protocol.openai_common import DeletedObject, ListPage, OpenAIObject, omitted

FilePurpose = Literal["assistants", "assistants_output", "batch", "batch_output", "fine-tune", "fine-tune-results",
                      "vision", "user_data", "evals"]  # "evals": accepted by OpenAI's upload, missing from the enum


class FileObject(OpenAIObject):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = omitted()  # our files don't expire: left out
    status_details: str | None = omitted()


class FileList(ListPage[FileObject]):
    pass


class FileDeleted(DeletedObject):
    object: Literal["file"] = "file"


class Embedding(OpenAIObject):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # a base64 string with `encoding_format: base64`


class EmbeddingUsage(OpenAIObject):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(OpenAIObject):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
