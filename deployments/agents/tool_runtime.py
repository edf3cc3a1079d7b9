"""The Llama Stack 0.2 tool runtime: list the tools of a tool group, find a tool by name, invoke it.

Builtin tools run here (knowledge_search through the VectorIO deployment's rag-tool query, web_search through the
configured search provider); tools of registered MCP groups run on their server. Tool names are global, as in
Llama Stack: a name is looked up in the builtins, then in the tool lists last read from each MCP server.
A tool that fails while running is a result with `error_message` / `error_code`, not an HTTP error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from deployments.agents.toolgroups import RAG_GROUP, WEB_SEARCH_GROUP, ToolGroupRegistry, check_mcp_uri
from deployments.agents.tools.mcp import DEFAULT_TIMEOUT_S, ToolError, call_mcp_tool, list_mcp_tools
from serve.errors import FailedDependencyError, InvalidRequestError, NotFoundError

logger = logging.getLogger("stackserve.agents")


def _param(name: str, description: str, kind: str = "string", required: bool = True) -> dict[str, Any]:
    return {"name": name, "parameter_type": kind, "description": description, "required": required, "default": None}


KNOWLEDGE_SEARCH = {
    "name": "knowledge_search", "description": "Search for information in a database.", "metadata": None,
    "parameters": [_param("query", "The query to search for. Can be a natural language sentence or keywords.")]}
WEB_SEARCH = {"name": "web_search", "description": "Search the web for information", "metadata": None,
              "parameters": [_param("query", "The query to search for")]}
BUILTIN_TOOLS = {RAG_GROUP: [KNOWLEDGE_SEARCH], WEB_SEARCH_GROUP: [WEB_SEARCH]}


def _json_type(kind: Any) -> str:
    """A JSON schema `type` as a ToolDef parameter_type (a string): ["integer", "null"] -> "integer"."""
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else "string"


def mcp_tool_def(tool: dict[str, Any], uri: str) -> dict[str, Any]:
    """An MCP tool ({name, description, input_schema}) as a Llama Stack ToolDef."""
    schema = tool.get("input_schema") or {}
    required = set(schema.get("required") or [])
    params = [{**_param(name, str(p.get("description") or ""), _json_type(p.get("type")), name in required),
               "default": p.get("default")} for name, p in (schema.get("properties") or {}).items()]
    return {"name": tool["name"], "description": tool.get("description") or "", "parameters": params,
            "metadata": {"endpoint": uri}}


def tool_object(tool_def: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": tool_def["name"], "provider_resource_id": tool_def["name"],
            "provider_id": group["provider_id"], "type": "tool", "toolgroup_id": group["identifier"],
            "description": tool_def.get("description") or "", "parameters": tool_def.get("parameters") or [],
            "metadata": tool_def.get("metadata")}


def invocation_result(content: Any = None, metadata: dict | None = None, error: str | None = None) -> dict[str, Any]:
    return {"content": content, "error_message": error, "error_code": 1 if error else None, "metadata": metadata}


class ToolRuntime:
    def __init__(self, registry: ToolGroupRegistry, vector_io: Any, config: Any = None):
        self.registry = registry
        self.vector_io = vector_io
        self.config = config  # serve.config.AgentsConfig
        self.timeout = config.tool_timeout_s if config is not None else DEFAULT_TIMEOUT_S

    # ---- listing ----------------------------------------------------------------------------------------------

    async def _mcp_defs(self, uri: str) -> list[dict[str, Any]]:
        try:
            return [mcp_tool_def(t, uri) for t in await list_mcp_tools(uri, timeout=self.timeout)]
        except ToolError as e:
            raise FailedDependencyError(str(e), param="mcp_endpoint", code="mcp_server_error") from None

    async def group_defs(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        """A group's ToolDefs: builtins are fixed; an MCP group's are read from its server (and remembered)."""
        if group["identifier"] in BUILTIN_TOOLS and not group["mcp_endpoint"]:
            return BUILTIN_TOOLS[group["identifier"]]
        defs = await self._mcp_defs(group["mcp_endpoint"]["uri"])
        await asyncio.to_thread(self.registry.remember_tools, group["identifier"], defs)
        return defs

    async def _all_groups(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Every group with its tools; an unreachable MCP server lists what was last read from it."""
        groups = await asyncio.to_thread(self.registry.list)
        cached = await asyncio.to_thread(self.registry.cached_tools)
        out = []
        for g in groups:
            try:
                out.append((g, await self.group_defs(g)))
            except FailedDependencyError as e:
                logger.warning("tool group %s: %s", g["identifier"], e.message)
                out.append((g, cached.get(g["identifier"], [])))
        return out

    async def list_tools(self, toolgroup_id: str | None = None) -> list[dict[str, Any]]:
        if toolgroup_id:
            group = await asyncio.to_thread(self.registry.get, toolgroup_id)
            return [tool_object(d, group) for d in await self.group_defs(group)]
        return [tool_object(d, g) for g, defs in await self._all_groups() for d in defs]

    async def list_runtime_tools(self, tool_group_id: str | None, mcp_uri: str | None) -> list[dict[str, Any]]:
        if mcp_uri:
            check_mcp_uri(mcp_uri)
            return await self._mcp_defs(mcp_uri)
        if tool_group_id:
            return await self.group_defs(await asyncio.to_thread(self.registry.get, tool_group_id))
        return [d for _, defs in await self._all_groups() for d in defs]

    async def find(self, tool_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(group, tool def) of a tool name; MCP servers are asked again only when the remembered lists miss it."""
        groups = {g["identifier"]: g for g in await asyncio.to_thread(self.registry.list)}
        for gid, defs in BUILTIN_TOOLS.items():
            for d in defs:
                if d["name"] == tool_name and gid in groups:
                    return groups[gid], d
        cached = await asyncio.to_thread(self.registry.cached_tools)
        for gid, defs in cached.items():
            for d in defs:
                if d["name"] == tool_name and gid in groups:
                    return groups[gid], d
        for g, defs in await self._all_groups():
            for d in defs:
                if d["name"] == tool_name:
                    return g, d
        raise NotFoundError(f"Tool '{tool_name}' not found", param="tool_name", code="tool_not_found")

    async def get_tool(self, tool_name: str) -> dict[str, Any]:
        group, tool_def = await self.find(tool_name)
        return tool_object(tool_def, group)

    # ---- invocation -------------------------------------------------------------------------------------------

    async def invoke(self, tool_name: str, kwargs: dict[str, Any], provider_data: Any = None) -> dict[str, Any]:
        """`provider_data`: the request's ProviderData (serve/protocol/provider_data.py), e.g. its web search key."""
        group, _ = await self.find(tool_name)
        if tool_name == KNOWLEDGE_SEARCH["name"] and group["identifier"] == RAG_GROUP:
            return await self.knowledge_search(kwargs)
        if tool_name == WEB_SEARCH["name"] and group["identifier"] == WEB_SEARCH_GROUP:
            return await self.web_search(kwargs, provider_data)
        try:
            text = await call_mcp_tool(group["mcp_endpoint"]["uri"], tool_name, kwargs, timeout=self.timeout)
        except ToolError as e:
            return invocation_result([{"type": "text", "text": str(e)}], error=str(e))
        return invocation_result([{"type": "text", "text": text}])

    async def knowledge_search(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        from serve.protocol.vector_io import RagQueryRequest

        ids = kwargs.get("vector_db_ids")
        if not ids or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InvalidRequestError("knowledge_search needs vector_db_ids (a list of vector DB ids) in kwargs",
                                      param="kwargs.vector_db_ids")
        if not str(kwargs.get("query") or "").strip():
            raise InvalidRequestError("knowledge_search needs a query", param="kwargs.query")
        if self.vector_io is None:
            raise InvalidRequestError("knowledge_search needs vector_io in the stack's config", param="tool_name")
        req = RagQueryRequest(content=kwargs["query"], vector_db_ids=ids, query_config=kwargs.get("query_config"))
        r = await self.vector_io.rag_query.remote(req)
        return invocation_result(r["content"], r["metadata"])

    async def web_search(self, kwargs: dict[str, Any], provider_data: Any = None) -> dict[str, Any]:
        """Content as Llama Stack's search providers give it: JSON text `{"query", "top_k": [{title, url,
        content}]}`."""
        from deployments.agents.tools.web_search import make_web_search

        query = str(kwargs.get("query") or "").strip()
        if not query:
            raise InvalidRequestError("web_search needs a query", param="kwargs.query")
        provider = make_web_search(self.config.web_search if self.config is not None else None, provider_data,
                                   param="tool_name")
        try:
            results = await provider.search(query)
        except ToolError as e:
            return invocation_result(str(e), error=str(e))
        return invocation_result(json.dumps({"query": query, "top_k": results}), {"results": results})
