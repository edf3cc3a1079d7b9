"""OpenAI Batch API: the create request and the batch object (built by deployments/batches/store.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve.protocol.openai_common import OpenAIObject, omitted


class CreateBatchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: dict[str, Any] | None = None  # accepted; output files don't expire here

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None:
            if len(v) > 16:
                raise ValueError("at most 16 metadata pairs are allowed")
            for key, value in v.items():
                if len(key) > 64 or len(value) > 512:
                    raise ValueError("metadata keys are at most 64 characters and values at most 512")
        return v


# ---- responses: OpenAI's `Batch` (every field but the first seven is optional and never null) ----------------------

class BatchError(OpenAIObject):
    code: str | None = omitted()
    message: str | None = omitted()
    param: str | None = None
    line: int | None = None


class BatchErrors(OpenAIObject):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(OpenAIObject):
    total: int
    completed: int
    failed: int


class BatchUsage(OpenAIObject):
    input_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens: int
    output_tokens_details: dict[str, int]
    total_tokens: int


class Batch(OpenAIObject):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    input_file_id: str
    completion_window: str
    status: Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                    "cancelled"]
    created_at: int
    model: str | None = omitted()
    errors: BatchErrors | None = omitted()
    output_file_id: str | None = omitted()
    error_file_id: str | None = omitted()
    in_progress_at: int | None = omitted()
    expires_at: int | None = omitted()
    finalizing_at: int | None = omitted()
    completed_at: int | None = omitted()
    failed_at: int | None = omitted()
    expired_at: int | None = omitted()
    cancelling_at: int | None = omitted()
    cancelled_at: int | None = omitted()
    request_counts: BatchRequestCounts | None = omitted()
    usage: BatchUsage | None = omitted()
    metadata: dict[str, str] | None = None


class BatchList(OpenAIObject):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = omitted()
    last_id: str | None = omitted()
    has_more: bool
