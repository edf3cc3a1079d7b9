"""OpenAI Responses and Conversations request schemas (plus Llama Stack's extensions)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


KNOWN_TOOLS = {"function", "file_search", "web_search", "web_search_preview", "mcp"}
# `include` values served: file search results, the answer's token logprobs, and reasoning.encrypted_content
# (accepted; our models produce no reasoning items, so it adds nothing)
KNOWN_INCLUDES = {"file_search_call.results", "message.output_text.logprobs", "reasoning.encrypted_content"}


class PromptReference(_Lenient):
    """`prompt` of a create: a stored prompt (/v1/prompts) whose text, variables filled in, is the instructions."""

    id: str = Field(min_length=1)
    version: str | int | None = None  # OpenAI sends a string, Llama Stack an integer; None: the default version
    variables: dict[str, str | dict[str, Any]] | None = None

    @field_validator("version")
    @classmethod
    def _version(cls, v: str | int | None) -> int | None:
        if v is None:
            return None
        if isinstance(v, str) and not v.strip().isdigit() or int(v) < 1:
            raise ValueError("prompt.version must be a positive integer")
        return int(v)


class ContextManagement(_Lenient):
    """Server-side compaction: when the prompt passes `compact_threshold` tokens (None: when it would not fit the
    model's context), the history is summarised by the model into a compaction item first."""

    type: Literal["compaction"]
    compact_threshold: int | None = Field(default=None, ge=1)


class CreateResponseRequest(_Lenient):
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = Field(default=None, ge=0)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    metadata: dict[str, str] | None = None
    store: bool = True
    stream: bool = False
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    include: list[str] | None = None
    guardrails: list[str | dict[str, Any]] | None = None
    max_infer_iters: int = Field(default=10, ge=1, le=50)
    seed: int | None = None
    background: bool = False
    prompt: PromptReference | None = None
    prompt_cache_key: str | None = None  # echoed, as OpenAI does; the model calls of one key share a replica
    truncation: Literal["auto", "disabled"] | None = "disabled"
    context_management: list[ContextManagement] | None = Field(default=None, max_length=1)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @field_validator("include")
    @classmethod
    def _include(cls, v: list[str] | None) -> list[str] | None:
        unknown = sorted(set(v or []) - KNOWN_INCLUDES)
        if unknown:
            raise ValueError(f"include values {unknown} are not supported (supported: {sorted(KNOWN_INCLUDES)})")
        return v

    @field_validator("input")
    @classmethod
    def _input(cls, v: str | list) -> str | list:
        if isinstance(v, str) and not v.strip() or isinstance(v, list) and not v:
            raise ValueError("input must not be empty")
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for t in v:
            kind = t.get("type") if isinstance(t, dict) else None
            if kind not in KNOWN_TOOLS:
                raise ValueError(f"unknown tool type {kind!r}")
            if kind == "function" and not t.get("name"):
                raise ValueError("function tools need a name")
            if kind == "file_search" and not t.get("vector_store_ids"):
                raise ValueError("file_search tools need vector_store_ids")
            if kind == "mcp":
                _check_mcp_tool(t)
        return v

    @model_validator(mode="after")
    def _one_context(self) -> CreateResponseRequest:
        if self.previous_response_id and self.conversation:
            raise ValueError("previous_response_id and conversation cannot be used together")
        if self.background and not self.store:
            raise ValueError("background responses must be stored (store: true)")
        labels = [t["server_label"] for t in self.tools if t.get("type") == "mcp"]
        if len(labels) != len(set(labels)):
            raise ValueError("each mcp tool needs its own server_label")
        return self

    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, dict):
            return self.conversation.get("id")
        return self.conversation

    def compact_threshold(self) -> int | None:
        """The compaction threshold in tokens; 0: compact when the prompt would not fit; None: never compact."""
        for entry in self.context_management or []:
            return entry.compact_threshold or 0
        return None


def _check_mcp_tool(t: dict[str, Any]) -> None:
    if not t.get("server_label") or not isinstance(t["server_label"], str):
        raise ValueError("mcp tools need a server_label")
    url = t.get("server_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"mcp tool {t['server_label']!r} needs an http(s) server_url (connectors are not supported)")
    if not isinstance(t.get("headers") or {}, dict):
        raise ValueError("mcp headers must be an object")
    rule = t.get("require_approval", "never")
    if not (rule in ("always", "never") or isinstance(rule, dict) and set(rule) <= {"always", "never"}):
        raise ValueError("require_approval must be 'always', 'never' or {always: {tool_names}, never: {tool_names}}")
    allowed = t.get("allowed_tools")
    if allowed is not None and not isinstance(allowed, (list, dict)):
        raise ValueError("allowed_tools must be a list of tool names or {tool_names: [...]}")


class CreateConversationRequest(_Lenient):
    items: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None


class UpdateConversationRequest(_Lenient):
    metadata: dict[str, str]


class ConversationItemsRequest(_Lenient):
    items: list[dict[str, Any]] = Field(min_length=1, max_length=20)


class CompactRequest(_Lenient):
    """POST /responses/compact: the history to compact, from `input` items and/or a stored chain."""

    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    prompt_cache_key: str | None = None

    @model_validator(mode="after")
    def _something(self) -> CompactRequest:
        if not self.input and not self.previous_response_id:
            raise ValueError("compaction needs input or previous_response_id")
        return self
