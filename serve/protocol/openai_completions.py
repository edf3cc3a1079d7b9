"""Chat completion and completion response bodies, and the chunk types of their SSE streams.

Shaped as OpenAI's published OpenAPI document: a chat message always carries `content` and `refusal` (null when
absent), `system_fingerprint` is left out rather than null. The streamed chunks are documented here but not
validated per token: the LLM deployment builds them as dicts (the hot path).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from serve.protocol.openai_common import OpenAIObject, omitted

ChatFinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class PromptTokensDetails(OpenAIObject):
    cached_tokens: int = 0  # prompt tokens served from the engine's prefix cache


class CompletionUsage(OpenAIObject):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = omitted()


def cached_tokens(usage: dict[str, Any]) -> int:
    """The prompt tokens an OpenAI usage dict says came from the prefix cache (0 when it does not say)."""
    return (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)


class TopLogprob(OpenAIObject):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(OpenAIObject):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class FunctionCall(OpenAIObject):
    name: str
    arguments: str


class ToolCall(OpenAIObject):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatCompletionMessage(OpenAIObject):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = omitted()


class ChatCompletionChoice(OpenAIObject):
    index: int
    message: ChatCompletionMessage
    finish_reason: ChatFinishReason
    logprobs: ChoiceLogprobs | None = None
    stop_reason: str | None = omitted()  # vLLM's extension: the stop string that ended the choice


class ChatCompletion(OpenAIObject):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage | None = omitted()
    system_fingerprint: str | None = omitted()


class ToolCallDelta(OpenAIObject):
    index: int
    id: str | None = omitted()
    type: Literal["function"] | None = omitted()
    function: dict[str, str] | None = omitted()


class ChatCompletionDelta(OpenAIObject):
    role: Literal["assistant"] | None = omitted()
    content: str | None = None
    refusal: str | None = omitted()
    tool_calls: list[ToolCallDelta] | None = omitted()


class ChatCompletionChunkChoice(OpenAIObject):
    index: int
    delta: ChatCompletionDelta
    finish_reason: ChatFinishReason | None = None
    logprobs: ChoiceLogprobs | None = None
    stop_reason: str | None = omitted()  # vLLM's extension, on the last chunk: the stop string that ended it


class ChatCompletionChunk(OpenAIObject):
    """One `data:` event of a streamed chat completion; the last may carry only `usage` (empty `choices`)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = omitted()


class CompletionLogprobs(OpenAIObject):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(OpenAIObject):
    index: int
    text: str
    # The document types it as a required enum; in a stream every chunk but a choice's last carries null (as
    # OpenAI's own server sends), so the chunk choice below allows null.
    finish_reason: Literal["stop", "length", "content_filter"]
    logprobs: CompletionLogprobs | None = None


class Completion(OpenAIObject):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = omitted()
    system_fingerprint: str | None = omitted()


class CompletionChunkChoice(CompletionChoice):
    finish_reason: Literal["stop", "length", "content_filter"] | None = None  # type: ignore[assignment]


class CompletionChunk(Completion):
    """One `data:` event of a streamed completion (the same object as the completion, choice by choice)."""

    choices: list[CompletionChunkChoice]  # type: ignore[assignment]
    usage: CompletionUsage | None = None
