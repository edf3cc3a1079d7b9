"""Llama Stack 0.2's native Inference API: request bodies as llama-stack-client 0.2.x sends them, and the response
bodies it parses (`/v1/inference/chat-completion`, `/completion`, `/embeddings`, `/batch-chat-completion`,
`/batch-completion`). serve/llama_inference.py translates them to and from the OpenAI requests the LLM and
Embeddings deployments serve.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve.protocol.llama_common import (
    CompletionMessage,
    InterleavedContent,
    InterleavedContentItem,
    LlamaObject,
    ToolCall,
)

StopReason = Literal["end_of_turn", "end_of_message", "out_of_tokens"]

# Llama Stack's tool parameter types (Python-ish names) as JSON Schema types; unknown names become strings.
JSON_TYPES = {"string": "string", "str": "string", "integer": "integer", "int": "integer", "float": "number",
              "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
              "dict": "object", "object": "object"}


class _Request(BaseModel):
    # as the OpenAI request models: fields newer clients add are ignored, not refused
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class UserMessageParam(_Request):
    role: Literal["user"]
    content: InterleavedContent
    context: InterleavedContent | None = None


class SystemMessageParam(_Request):
    role: Literal["system"]
    content: InterleavedContent


class ToolResponseMessageParam(_Request):
    role: Literal["tool"]
    call_id: str
    content: InterleavedContent


class CallInMessage(_Request):
    call_id: str
    tool_name: str
    arguments: str | dict[str, Any] = Field(default_factory=dict)
    arguments_json: str | None = None


class AssistantMessageParam(_Request):
    """A CompletionMessage sent back as history (stop_reason is not needed to continue from it)."""

    role: Literal["assistant"]
    content: InterleavedContent = ""
    stop_reason: StopReason | None = None
    tool_calls: list[CallInMessage] | None = None


Message = Annotated[UserMessageParam | SystemMessageParam | ToolResponseMessageParam | AssistantMessageParam,
                    Field(discriminator="role")]


class GreedyStrategy(_Request):
    type: Literal["greedy"] = "greedy"


class TopPStrategy(_Request):
    type: Literal["top_p"]
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=0.95, gt=0.0, le=1.0)


class TopKStrategy(_Request):
    type: Literal["top_k"]
    top_k: int = Field(ge=1)


class SamplingParams(_Request):
    strategy: Annotated[GreedyStrategy | TopPStrategy | TopKStrategy, Field(discriminator="type")] = Field(
        default_factory=GreedyStrategy)
    max_tokens: int | None = Field(default=None, ge=0)  # 0 or absent: the model's default budget
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    stop: list[str] | None = None


class JsonSchemaResponseFormat(_Request):
    type: Literal["json_schema"]
    json_schema: dict[str, Any]


class GrammarResponseFormat(_Request):
    type: Literal["grammar"]
    bnf: dict[str, Any] | str


ResponseFormat = Annotated[JsonSchemaResponseFormat | GrammarResponseFormat, Field(discriminator="type")]


class ToolParamDefinition(_Request):
    param_type: str
    description: str | None = None
    required: bool | None = True
    default: Any = None


class ToolDefinition(_Request):
    tool_name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, ToolParamDefinition] | None = None


ToolChoice = Literal["auto", "required", "none"] | str


class InferenceToolConfig(_Request):
    tool_choice: ToolChoice | None = "auto"
    tool_prompt_format: Literal["json", "function_tag", "python_list"] | None = None
    system_message_behavior: Literal["append", "replace"] | None = "append"


class LogProbConfig(_Request):
    top_k: int | None = Field(default=0, ge=0, le=20)


class _Sampled(_Request):
    model_id: str
    sampling_params: SamplingParams | None = None
    response_format: ResponseFormat | None = None
    logprobs: LogProbConfig | None = None


class _ChatOptions(_Sampled):
    tools: list[ToolDefinition] | None = None
    tool_config: InferenceToolConfig | None = None


class LlamaChatCompletionRequest(_ChatOptions):
    messages: list[Message] = Field(min_length=1)
    # deprecated in 0.2 in favour of tool_config, still sent by clients
    tool_choice: ToolChoice | None = None
    tool_prompt_format: Literal["json", "function_tag", "python_list"] | None = None
    stream: bool = False


class LlamaCompletionRequest(_Sampled):
    content: InterleavedContent
    stream: bool = False


class BatchChatCompletionRequest(_ChatOptions):
    messages_batch: list[list[Message]] = Field(min_length=1)


class BatchCompletionRequest(_Sampled):
    content_batch: list[InterleavedContent] = Field(min_length=1)


class EmbeddingsRequest(_Request):
    model_id: str
    contents: list[str | InterleavedContentItem] = Field(min_length=1)
    text_truncation: Literal["none", "start", "end"] | None = "none"
    output_dimension: int | None = Field(default=None, ge=1)
    task_type: Literal["query", "document"] | None = None


# ---- responses -----------------------------------------------------------------------------------------------

class Metric(LlamaObject):
    metric: str
    value: float
    unit: str | None = None


class TokenLogProbs(LlamaObject):
    logprobs_by_token: dict[str, float]


class ChatCompletionResponse(LlamaObject):
    completion_message: CompletionMessage
    logprobs: list[TokenLogProbs] | None = None
    metrics: list[Metric] | None = None


class InferenceTextDelta(LlamaObject):
    type: Literal["text"]
    text: str


class InferenceToolCallDelta(LlamaObject):
    type: Literal["tool_call"]
    tool_call: ToolCall | str
    parse_status: Literal["started", "in_progress", "failed", "succeeded"]


class ChatCompletionResponseEvent(LlamaObject):
    event_type: Literal["start", "complete", "progress"]
    delta: Annotated[InferenceTextDelta | InferenceToolCallDelta, Field(discriminator="type")]
    logprobs: list[TokenLogProbs] | None = None
    stop_reason: StopReason | None = None


class ChatCompletionResponseStreamChunk(LlamaObject):
    event: ChatCompletionResponseEvent
    metrics: list[Metric] | None = None


class CompletionResponse(LlamaObject):
    content: str
    stop_reason: StopReason
    logprobs: list[TokenLogProbs] | None = None
    metrics: list[Metric] | None = None


class CompletionResponseStreamChunk(LlamaObject):
    delta: str
    stop_reason: StopReason | None = None
    logprobs: list[TokenLogProbs] | None = None
    metrics: list[Metric] | None = None


class BatchChatCompletionResponse(LlamaObject):
    batch: list[ChatCompletionResponse]


class BatchCompletionResponse(LlamaObject):
    batch: list[CompletionResponse]


class EmbeddingsResponse(LlamaObject):
    embeddings: list[list[float]]
