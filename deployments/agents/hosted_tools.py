"""The server-side ("hosted") tools of one response: file_search, web_search and MCP servers.

The model sees every tool as a chat function; this module maps a called function name back to the tool that owns
it, runs it, and says how its output item looks. Function tools the client declared stay client-side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deployments.agents.tools.mcp import ToolError, call_mcp_tool, list_mcp_tools
from serve.protocol.vector_io import SearchRequest
from serve.telemetry.agents import tool_span

FILE_SEARCH = "file_search"
WEB_SEARCH = "web_search"
WEB_SEARCH_TYPES = ("web_search", "web_search_preview")
_QUERY = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}


def _fn(name: str, description: str, parameters: dict) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


@dataclass
class McpTool:
    server: dict[str, Any]  # the request's mcp tool entry (server_label, server_url, headers, ...)
    name: str  # the tool's name on its server
    description: str
    input_schema: dict[str, Any]

    @property
    def label(self) -> str:
        return self.server["server_label"]


def _names(spec: Any) -> list[str] | None:
    """allowed_tools / require_approval filters: a list of names or {"tool_names": [...]}."""
    if spec is None:
        return None
    if isinstance(spec, list):
        return [str(n) for n in spec]
    return [str(n) for n in spec.get("tool_names") or []]


def mcp_headers(server: dict[str, Any]) -> dict[str, str]:
    headers = {str(k): str(v) for k, v in (server.get("headers") or {}).items()}
    if server.get("authorization"):
        headers["Authorization"] = f"Bearer {server['authorization']}"
    return headers


class HostedTools:
    def __init__(self, tools: list[dict[str, Any]], vector_io: Any, web_search: Any, timeout_s: float):
        self.tools = tools
        self.vector_io = vector_io
        self.web_search = web_search  # a WebSearchProvider, when the request asks for web_search
        self.timeout_s = timeout_s
        self.mcp: dict[str, McpTool] = {}  # model-facing function name -> MCP tool

    # ---- MCP discovery -----------------------------------------------------------------------------------------

    def mcp_servers(self) -> list[dict[str, Any]]:
        return [t for t in self.tools if t["type"] == "mcp"]

    async def list_server_tools(self, server: dict[str, Any]) -> list[dict[str, Any]]:
        """Lists one server's tools (filtered by allowed_tools) and registers them for the model."""
        listed = await list_mcp_tools(server["server_url"], mcp_headers(server), self.timeout_s)
        allowed = _names(server.get("allowed_tools"))
        listed = [t for t in listed if allowed is None or t["name"] in allowed]
        for t in listed:
            fn = t["name"]
            if fn in self.mcp or fn in (FILE_SEARCH, WEB_SEARCH):
                fn = f"{server['server_label']}__{t['name']}"
            self.mcp[fn] = McpTool(server, t["name"], t["description"], t["input_schema"])
        return listed

    # ---- what the model sees -------------------------------------------------------------------------------------

    def chat_tools(self) -> list[dict[str, Any]]:
        out = []
        for t in self.tools:
            if t["type"] == "function":
                out.append(_fn(t["name"], t.get("description") or "", t.get("parameters") or {}))
        if any(t["type"] == FILE_SEARCH for t in self.tools):
            out.append(_fn(FILE_SEARCH, "Search the knowledge base (uploaded files) for passages about a query.",
                           _QUERY))
        if any(t["type"] in WEB_SEARCH_TYPES for t in self.tools):
            out.append(_fn(WEB_SEARCH, "Search the web for up-to-date information about a query.", _QUERY))
        for fn, tool in self.mcp.items():
            out.append(_fn(fn, tool.description, tool.input_schema))
        return out

    def chat_tool_choice(self, choice: dict[str, Any]) -> dict[str, Any] | None:
        """A tool_choice object naming a hosted tool -> the chat function to force (None: not ours)."""
        kind = choice.get("type")
        if kind == FILE_SEARCH:
            return {"type": "function", "function": {"name": FILE_SEARCH}}
        if kind in WEB_SEARCH_TYPES:
            return {"type": "function", "function": {"name": WEB_SEARCH}}
        if kind == "mcp":
            for fn, tool in self.mcp.items():
                if tool.label == choice.get("server_label") and tool.name == (choice.get("name") or tool.name):
                    return {"type": "function", "function": {"name": fn}}
        return None

    # ---- running a call ---------------------------------------------------------------------------------------

    def kind_of(self, fn: str) -> str | None:
        """'file_search' | 'web_search' | 'mcp' for hosted tools; None for the client's own functions."""
        if fn in self.mcp:
            return "mcp"
        if fn == FILE_SEARCH and any(t["type"] == FILE_SEARCH for t in self.tools):
            return FILE_SEARCH
        if fn == WEB_SEARCH and any(t["type"] in WEB_SEARCH_TYPES for t in self.tools):
            return WEB_SEARCH
        return None

    def needs_approval(self, fn: str) -> bool:
        tool = self.mcp[fn]
        rule = tool.server.get("require_approval", "never")
        if isinstance(rule, str):
            return rule == "always"
        never = _names(rule.get("never")) or []
        always = _names(rule.get("always"))
        if tool.name in never:
            return False
        return always is None or tool.name in always

    def find_mcp(self, server_label: str, name: str) -> str | None:
        return next((fn for fn, t in self.mcp.items() if t.label == server_label and t.name == name), None)

    @tool_span("mcp")
    async def run_mcp(self, fn: str, arguments: str) -> str:
        tool = self.mcp[fn]
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError as e:
            raise ToolError(f"the arguments are not valid JSON: {e}") from None
        if not isinstance(args, dict):
            raise ToolError("the arguments must be a JSON object")
        return await call_mcp_tool(tool.server["server_url"], tool.name, args, mcp_headers(tool.server),
                                   self.timeout_s)

    @tool_span("web_search")
    async def run_web_search(self, query: str) -> list[dict[str, Any]]:
        limit = min([int(t.get("max_num_results") or 0) or self.web_search.max_results
                     for t in self.tools if t["type"] in WEB_SEARCH_TYPES])
        return await self.web_search.search(query, limit)

    @tool_span("file_search")
    async def run_file_search(self, queries: list[str]) -> list[dict[str, Any]]:
        results = []
        specs = [t for t in self.tools if t["type"] == FILE_SEARCH]
        for t in specs:
            req = SearchRequest(query=queries, max_num_results=t.get("max_num_results", 10), filters=t.get("filters"),
                                ranking_options=t.get("ranking_options"))
            for vs in t["vector_store_ids"]:
                page = await self.vector_io.search_vector_store.remote(vs, req)
                results += [{"file_id": d["file_id"], "filename": d["filename"], "score": d["score"],
                             "attributes": d["attributes"], "text": d["content"][0]["text"]} for d in page["data"]]
        limit = min([t.get("max_num_results", 10) for t in specs] or [10])
        return sorted(results, key=lambda r: -r["score"])[:limit]


def query_of(arguments: str) -> str:
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return ""
    return str(args.get("query") or "").strip() if isinstance(args, dict) else ""

