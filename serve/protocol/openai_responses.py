"""Responses and Conversations response bodies: the Response object with its output items, item lists, deleted
objects and conversations (OpenAI's `Response`, `ResponseItemList`, `ConversationResource`, ...).

The items we produce most (assistant messages, function calls, file searches) and the function tool are typed;
other item and tool kinds pass through as objects with their `type` (and `id` for items).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from serve.protocol.openai_common import DeletedObject, ListPage, OpenAIObject, omitted

ItemStatus = Literal["in_progress", "completed", "incomplete"]


def _other_kind(known: set[str]) -> Any:
    """The `type` of a catch-all member: any string but the known kinds, so the schema's oneOf stays exclusive."""
    return Field(json_schema_extra={"not": {"enum": sorted(known)}})


def _kind(known: set[str]) -> Any:
    def pick(v: Any) -> str:
        kind = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
        return kind if kind in known else "other"
    return Discriminator(pick)


# ---- tools echoed in a Response -------------------------------------------------------------------------------

class FunctionTool(OpenAIObject):
    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # required (nullable) in the document: echoed as null when the request left it out


class OtherTool(OpenAIObject):
    # not "function": in the schema's oneOf a function tool must match FunctionTool alone
    type: str = Field(json_schema_extra={"not": {"const": "function"}})


ResponseTool = Annotated[Annotated[FunctionTool, Tag("function")] | Annotated[OtherTool, Tag("other")],
                         _kind({"function"})]


# ---- output items -------------------------------------------------------------------------------------------------

class OutputText(OpenAIObject):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = []
    logprobs: list[dict[str, Any]] = []


class Refusal(OpenAIObject):
    type: Literal["refusal"] = "refusal"
    refusal: str


class OtherContent(OpenAIObject):
    type: str = _other_kind({"output_text", "refusal"})


OutputContent = Annotated[Annotated[OutputText, Tag("output_text")] | Annotated[Refusal, Tag("refusal")]
                          | Annotated[OtherContent, Tag("other")], _kind({"output_text", "refusal"})]


class OutputMessage(OpenAIObject):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputContent]


class FunctionToolCall(OpenAIObject):
    type: Literal["function_call"] = "function_call"
    id: str | None = omitted()
    call_id: str
    name: str
    arguments: str
    status: ItemStatus | None = omitted()


class FileSearchToolCall(OpenAIObject):
    type: Literal["file_search_call"] = "file_search_call"
    id: str
    queries: list[str]
    status: Literal["in_progress", "searching", "completed", "incomplete", "failed"]
    results: list[dict[str, Any]] | None = None


class OtherItem(OpenAIObject):
    type: str = _other_kind({"message", "function_call", "file_search_call"})
    id: str | None = omitted()


OutputItem = Annotated[
    Annotated[OutputMessage, Tag("message")] | Annotated[FunctionToolCall, Tag("function_call")]
    | Annotated[FileSearchToolCall, Tag("file_search_call")] | Annotated[OtherItem, Tag("other")],
    _kind({"message", "function_call", "file_search_call"})]


class StoredItem(OpenAIObject):
    """An input or conversation item as stored: any item kind, always with an id."""

    type: str
    id: str


# ---- the Response ---------------------------------------------------------------------------------------------------

class InputTokensDetails(OpenAIObject):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class ResponseUsage(OpenAIObject):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: dict[str, int]
    total_tokens: int


class ResponseError(OpenAIObject):
    code: str
    message: str


class Response(OpenAIObject):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"] | None = omitted()
    model: str
    output: list[OutputItem]
    error: ResponseError | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[ResponseTool]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    previous_response_id: str | None = None
    conversation: dict[str, str] | None = None
    text: dict[str, Any] | None = omitted()
    usage: ResponseUsage | None = omitted()
    background: bool | None = None
    prompt: dict[str, Any] | None = None  # the stored prompt used: {id, version, variables}
    prompt_cache_key: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: int | None = None


class ResponseStreamEvent(OpenAIObject):
    """One `data:` event of a streamed Response (`response.created`, `response.output_text.delta`, ...)."""

    type: str
    sequence_number: int


class ResponseList(ListPage[Response]):
    pass


class ResponseDeleted(DeletedObject):
    object: Literal["response.deleted"] = "response.deleted"


class ResponseItemList(ListPage[StoredItem]):
    pass


class InputTokenCount(OpenAIObject):
    """POST /responses/input_tokens: the prompt a create of the same body would send the model, in tokens."""

    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int


class CompactedResponse(OpenAIObject):
    """POST /responses/compact: the history's user messages, then one `compaction` item holding the model's
    summary of it (in `encrypted_content`, as OpenAI names it: here it is the summary as plain text)."""

    id: str
    object: Literal["response.compaction"] = "response.compaction"
    created_at: int
    output: list[StoredItem]  # user messages (input items) and the compaction item
    usage: ResponseUsage


# ---- conversations -------------------------------------------------------------------------------------------------

class Conversation(OpenAIObject):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]


class ConversationDeleted(DeletedObject):
    object: Literal["conversation.deleted"] = "conversation.deleted"


class ConversationItemList(ListPage[StoredItem]):
    pass
