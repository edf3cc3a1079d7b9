"""Files and embeddings response bodies (OpenAI's `OpenAIFile`, `ListFilesResponse`, `CreateEmbeddingResponse`),
and what the ingress and the Files service pass each other about a file's bytes in the blob store
(serve/file_blobs.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

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


class RegisterFileRequest(BaseModel):
    """Ingress -> Files service: an upload whose bytes the ingress has stored under `blob_key(file_id)`."""

    file_id: str = Field(pattern=r"^file-[A-Za-z0-9]+$")
    filename: str
    purpose: str
    bytes: int = Field(gt=0)


class FileBlob(BaseModel):
    """Files service -> ingress: where a file's bytes are, for the ingress to stream them out."""

    filename: str
    blob_key: str
    bytes: int


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
