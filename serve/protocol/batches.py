"""OpenAI Batch API request schema (the batch object itself is built by deployments/batches/store.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
