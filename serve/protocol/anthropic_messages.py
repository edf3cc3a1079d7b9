"""Anthropic's Messages API: request bodies as the `anthropic` SDK sends them (`POST /v1/messages`,
`/v1/messages/count_tokens`) and the bodies and stream events it parses, shaped as its types (`Message`,
`RawMessageStreamEvent`, `MessageTokensCount`). serve/anthropic_messages.py translates them to and from the OpenAI
chat requests the LLM deployments serve.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                     "model_context_window_exceeded"]


class _Request(BaseModel):
    # fields newer SDKs add (cache_control, citations, service_tier, ...) are ignored, not refused
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class TextBlockParam(_Request):
    type: Literal["text"]
    text: str


def _as_blocks(value: Any) -> Any:
    """String content is one text block (`"hi"` == `[{"type": "text", "text": "hi"}]`, as Anthropic's API says)."""
    return [{"type": "text", "text": value}] if isinstance(value, str) else value


# str or a list of text blocks on the wire, always a list of blocks inside
TextContent = Annotated[list[TextBlockParam],
                        BeforeValidator(_as_blocks, json_schema_input_type=str | list[TextBlockParam])]


class ToolUseBlockParam(_Request):
    """A tool call of an earlier assistant turn."""

    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlockParam(_Request):
    """A tool's answer to the `tool_use` block with `tool_use_id`; `is_error`: the tool failed."""

    type: Literal["tool_result"]
    tool_use_id: str
    content: TextContent = Field(default_factory=list)
    is_error: bool = False


ContentBlockParam = Annotated[TextBlockParam | ToolUseBlockParam | ToolResultBlockParam, Field(discriminator="type")]
MessageContent = Annotated[list[ContentBlockParam],
                           BeforeValidator(_as_blocks, json_schema_input_type=str | list[ContentBlockParam])]


class MessageParam(_Request):
    role: Literal["user", "assistant", "system"]
    content: MessageContent


class ToolParam(_Request):
    """A client tool: the model's calls of it are `tool_use` blocks whose `input` follows `input_schema`."""

    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object":
            raise ValueError("input_schema must be a JSON schema of type 'object'")
        return v


class ToolChoiceAuto(_Request):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Request):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Request):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Request):
    type: Literal["none"]


ToolChoice = Annotated[ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")]


class Metadata(_Request):
    user_id: str | None = None


class JSONOutputFormat(_Request):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Request):
    """`format`: the answer's text is JSON following `schema` (grammar-constrained); `effort` is accepted."""

    format: JSONOutputFormat | None = None


class MessageCountTokensRequest(_Request):
    """What a prompt is made of: `POST /v1/messages/count_tokens` takes just this."""

    model: str
    messages: list[MessageParam] = Field(min_length=1)
    system: TextContent | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None


class MessageCreateRequest(MessageCountTokensRequest):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None
    stream: bool = False


# ---- responses --------------------------------------------------------------------------------------------------

class AnthropicObject(BaseModel):
    """A response body: fields the SDK's types have and we leave unset are absent; unknown ones pass through."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), json_schema_serialization_defaults_required=True)


class TextBlock(AnthropicObject):
    type: Literal["text"] = "text"
    text: str
    citations: list[dict[str, Any]] | None = None


class ToolUseBlock(AnthropicObject):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = Annotated[TextBlock | ToolUseBlock, Field(discriminator="type")]


class Usage(AnthropicObject):
    """Token counts: `input_tokens` excludes the prompt tokens read from the prefix cache
    (`cache_read_input_tokens`)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(AnthropicObject):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[ContentBlock]
    model: str
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


class MessageTokensCount(AnthropicObject):
    input_tokens: int


# ---- stream events (`event: <type>` then `data: {...}`) ----------------------------------------------------------

class MessageStartEvent(AnthropicObject):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(AnthropicObject):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class TextDelta(AnthropicObject):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJSONDelta(AnthropicObject):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDeltaEvent(AnthropicObject):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Annotated[TextDelta | InputJSONDelta, Field(discriminator="type")]


class ContentBlockStopEvent(AnthropicObject):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(AnthropicObject):
    stop_reason: StopReason | None
    stop_sequence: str | None = None


class MessageDeltaUsage(AnthropicObject):
    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDeltaEvent(AnthropicObject):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage


class MessageStopEvent(AnthropicObject):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(AnthropicObject):
    type: Literal["ping"] = "ping"


class ErrorDetail(AnthropicObject):
    type: str
    message: str


class ErrorEvent(AnthropicObject):
    """A failure after the stream began (also the body of every error on these routes)."""

    type: Literal["error"] = "error"
    error: ErrorDetail


StreamEvent = Annotated[MessageStartEvent | ContentBlockStartEvent | ContentBlockDeltaEvent | ContentBlockStopEvent
                        | MessageDeltaEvent | MessageStopEvent | PingEvent | ErrorEvent, Field(discriminator="type")]
