"""Llama Stack 0.2 request schemas: tool groups, the tool runtime, agents, sessions and turns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class McpEndpoint(_Lenient):
    uri: str = Field(min_length=1)


class RegisterToolGroupRequest(_Lenient):
    toolgroup_id: str = Field(min_length=1, max_length=256)
    provider_id: str = Field(min_length=1)
    mcp_endpoint: McpEndpoint | None = None
    args: dict[str, Any] | None = None


class InvokeToolRequest(_Lenient):
    tool_name: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ToolParameter(_Lenient):
    name: str
    parameter_type: str = "string"
    description: str = ""
    required: bool = True
    default: Any = None


class ClientToolDef(_Lenient):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: list[ToolParameter] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None


class AgentToolGroupWithArgs(_Lenient):
    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


AgentToolGroup = str | AgentToolGroupWithArgs


class ToolConfig(_Lenient):
    tool_choice: str | None = None  # auto | required | none | a tool's name
    tool_prompt_format: Literal["json", "function_tag", "python_list"] | None = None
    system_message_behavior: Literal["append", "replace"] | None = None


class AgentConfig(BaseModel):
    """Kept as given (unknown fields too), so GET /agents/{id} returns what was created."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str = Field(min_length=1)
    instructions: str
    name: str | None = None
    sampling_params: dict[str, Any] | None = None
    input_shields: list[str] = Field(default_factory=list)
    output_shields: list[str] = Field(default_factory=list)
    toolgroups: list[AgentToolGroup] = Field(default_factory=list)
    client_tools: list[ClientToolDef] = Field(default_factory=list)
    tool_choice: str | None = None  # deprecated in Llama Stack: tool_config.tool_choice
    tool_prompt_format: str | None = None
    tool_config: ToolConfig | None = None
    max_infer_iters: int = Field(default=10, ge=1, le=50)
    enable_session_persistence: bool | None = False
    response_format: dict[str, Any] | None = None

    @field_validator("client_tools")
    @classmethod
    def _unique_names(cls, v: list[ClientToolDef]) -> list[ClientToolDef]:
        names = [t.name for t in v]
        if len(names) != len(set(names)):
            raise ValueError("client tool names must be unique")
        return v


class CreateAgentRequest(_Lenient):
    agent_config: AgentConfig


class CreateSessionRequest(_Lenient):
    session_name: str = Field(min_length=1, max_length=1024)


class TurnDocument(_Lenient):
    content: Any
    mime_type: str


class CreateTurnRequest(_Lenient):
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    documents: list[TurnDocument] | None = None
    toolgroups: list[AgentToolGroup] | None = None
    tool_config: ToolConfig | None = None

    @field_validator("messages")
    @classmethod
    def _roles(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for m in v:
            if m.get("role") not in ("user", "tool"):
                raise ValueError("turn messages are user messages or tool responses (role 'user' or 'tool')")
            if m.get("content") is None:
                raise ValueError("every message needs content")
            if m["role"] == "tool" and not m.get("call_id"):
                raise ValueError("tool messages need call_id")
        return v


class ToolResponse(_Lenient):
    call_id: str = Field(min_length=1)
    tool_name: str
    content: Any
    metadata: dict[str, Any] | None = None


class ResumeTurnRequest(_Lenient):
    tool_responses: list[ToolResponse] = Field(min_length=1)
    stream: bool = False
