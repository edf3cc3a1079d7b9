"""GET /models bodies: OpenAI's model object with Llama Stack 0.2's fields, so both client generations parse it."""

from __future__ import annotations

from typing import Any, Literal

from serve.protocol.openai_common import OpenAIObject


class ModelObject(OpenAIObject):
    # OpenAI
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # Llama Stack 0.2
    identifier: str
    provider_id: str
    provider_resource_id: str | None = None
    model_type: Literal["llm", "embedding"]
    type: Literal["model"] = "model"
    metadata: dict[str, Any]


class ModelList(OpenAIObject):
    object: Literal["list"] = "list"
    data: list[ModelObject]
