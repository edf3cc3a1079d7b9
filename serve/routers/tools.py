"""Llama Stack 0.2 tool groups, tools and the tool runtime, served by the Agents deployment."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from serve.auth import require_admin
from serve.context import get_stack
from serve.errors import InvalidRequestError
from serve.protocol.agents import InvokeToolRequest, RegisterToolGroupRequest
from serve.protocol.llama_tools import (
    ListToolDefsResponse,
    ListToolGroupsResponse,
    ListToolsResponse,
    Tool,
    ToolGroup,
    ToolInvocationResult,
)
from serve.protocol.openapi_bodies import NULL_BODY, AsWrittenRoute
from serve.protocol.provider_data import provider_data_of

router = APIRouter(route_class=AsWrittenRoute, tags=["tools"])


@router.get("/toolgroups", response_model=ListToolGroupsResponse)
async def list_toolgroups() -> dict[str, Any]:
    return {"data": await get_stack().agents().list_toolgroups.remote()}


@router.post("/toolgroups", responses=NULL_BODY)
async def register_toolgroup(body: RegisterToolGroupRequest) -> None:
    require_admin("registering a tool group")
    uri = body.mcp_endpoint.uri if body.mcp_endpoint else None
    await get_stack().agents().register_toolgroup.remote(body.toolgroup_id, body.provider_id, uri, body.args)


@router.get("/toolgroups/{toolgroup_id:path}", response_model=ToolGroup)
async def get_toolgroup(toolgroup_id: str) -> dict[str, Any]:
    return await get_stack().agents().get_toolgroup.remote(toolgroup_id)


@router.delete("/toolgroups/{toolgroup_id:path}", responses=NULL_BODY)
async def unregister_toolgroup(toolgroup_id: str) -> None:
    require_admin("unregistering a tool group")
    await get_stack().agents().unregister_toolgroup.remote(toolgroup_id)


@router.get("/tools", response_model=ListToolsResponse)
async def list_tools(toolgroup_id: str | None = None) -> dict[str, Any]:
    return {"data": await get_stack().agents().list_tools.remote(toolgroup_id)}


@router.get("/tools/{tool_name:path}", response_model=Tool)
async def get_tool(tool_name: str) -> dict[str, Any]:
    return await get_stack().agents().get_tool.remote(tool_name)


def _mcp_uri(request: Request) -> str | None:
    """`mcp_endpoint` as llama-stack-client sends it (`mcp_endpoint[uri]=...`), as JSON, or as a bare URL."""
    q = request.query_params
    raw = q.get("mcp_endpoint[uri]") or q.get("mcp_endpoint.uri") or q.get("mcp_endpoint")
    if raw and raw.lstrip().startswith("{"):
        try:
            raw = json.loads(raw).get("uri")
        except (ValueError, AttributeError):
            raise InvalidRequestError("mcp_endpoint must be {\"uri\": ...}", param="mcp_endpoint") from None
    return raw or None


@router.get("/tool-runtime/list-tools", response_model=ListToolDefsResponse)
async def list_runtime_tools(request: Request, tool_group_id: str | None = None) -> dict[str, Any]:
    return {"data": await get_stack().agents().list_runtime_tools.remote(tool_group_id, _mcp_uri(request))}


@router.post("/tool-runtime/invoke", response_model=ToolInvocationResult)
async def invoke_tool(body: InvokeToolRequest, request: Request) -> dict[str, Any]:
    keys = provider_data_of(request.headers)  # web_search may use the client's own key
    return await get_stack().agents().invoke_tool.remote(body.tool_name, body.kwargs, keys)
