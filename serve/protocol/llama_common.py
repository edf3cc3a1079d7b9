"""Llama Stack 0.2 response building blocks shared by its families: content, messages, tool calls, violations.

Response models follow llama-stack-client 0.2.12's types (field names, required-ness, enums). They allow extra
fields, so a body keeps what the producer adds beyond the client's type (clients ignore it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

# A time as the producers write it (ISO 8601, `datetime.isoformat()`): validated as a date-time, served unchanged.
DateTime = Annotated[datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str, when_used="json"),
                     WithJsonSchema({"type": "string", "format": "date-time"})]
Metadata = dict[str, Any]


class LlamaObject(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ImageURL(LlamaObject):
    uri: str


class ImageContentItemImage(LlamaObject):
    data: str | None = None
    url: ImageURL | None = None


class ImageContentItem(LlamaObject):
    type: Literal["image"]
    image: ImageContentItemImage


class TextContentItem(LlamaObject):
    type: Literal["text"]
    text: str


InterleavedContentItem = Annotated[ImageContentItem | TextContentItem, Field(discriminator="type")]
InterleavedContent = str | ImageContentItem | TextContentItem | list[InterleavedContentItem]


class ToolCall(LlamaObject):
    call_id: str
    tool_name: str  # brave_search | wolfram_alpha | photogen | code_interpreter | any tool's name
    arguments: str | dict[str, Any]
    arguments_json: str | None = None


class CompletionMessage(LlamaObject):
    role: Literal["assistant"]
    content: InterleavedContent
    stop_reason: Literal["end_of_turn", "end_of_message", "out_of_tokens"]
    tool_calls: list[ToolCall] | None = None


class UserMessage(LlamaObject):
    role: Literal["user"]
    content: InterleavedContent
    context: InterleavedContent | None = None


class ToolResponseMessage(LlamaObject):
    role: Literal["tool"]
    call_id: str
    content: InterleavedContent


class ToolResponse(LlamaObject):
    call_id: str
    tool_name: str
    content: InterleavedContent
    metadata: Metadata | None = None


class SafetyViolation(LlamaObject):
    violation_level: Literal["info", "warn", "error"]
    user_message: str | None = None
    metadata: Metadata


class PaginatedResponse(LlamaObject):
    """Llama Stack 0.2's offset-paginated list (agents, sessions)."""

    data: list[dict[str, Any]]
    has_more: bool
    url: str | None = None
