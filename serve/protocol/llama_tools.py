"""Llama Stack 0.2 tool responses: tool groups, tools, tool definitions and invocation results."""

from __future__ import annotations

from typing import Any, Literal

from serve.protocol.llama_common import InterleavedContent, LlamaObject, Metadata


class McpEndpointInfo(LlamaObject):
    uri: str


class ToolGroup(LlamaObject):
    identifier: str
    provider_id: str
    provider_resource_id: str | None = None
    type: Literal["tool_group"]
    mcp_endpoint: McpEndpointInfo | None = None
    args: Metadata | None = None


class ListToolGroupsResponse(LlamaObject):
    data: list[ToolGroup]


class ToolParameterInfo(LlamaObject):
    name: str
    parameter_type: str
    description: str
    required: bool
    default: Any = None


class Tool(LlamaObject):
    identifier: str
    provider_id: str
    provider_resource_id: str | None = None
    type: Literal["tool"]
    toolgroup_id: str
    description: str
    parameters: list[ToolParameterInfo]
    metadata: Metadata | None = None


class ListToolsResponse(LlamaObject):
    data: list[Tool]


class ToolDef(LlamaObject):
    name: str
    description: str | None = None
    parameters: list[ToolParameterInfo] | None = None
    metadata: Metadata | None = None


class ListToolDefsResponse(LlamaObject):
    data: list[ToolDef]


class ToolInvocationResult(LlamaObject):
    content: InterleavedContent | None = None
    error_message: str | None = None
    error_code: int | None = None
    metadata: Metadata | None = None
