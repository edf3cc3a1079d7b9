"""The server-side ("hosted") tools of one response: one adapter per tool kind, from one table.

The model sees every tool as a chat function; this module maps a called function name back to the adapter that
owns it (tools/hosted.py: file_search, web_search; tools/mcp_tool.py: mcp). Function tools the client declared
stay client-side.
"""

from __future__ import annotations

from typing import Any

from deployments.agents.tools.hosted import (
    WEB_SEARCH_TYPES,
    FileSearchTool,
    HostedTool,
    ToolDeps,
    WebSearchTool,
    chat_function,
    query_of,
)
from deployments.agents.tools.mcp_tool import McpCallTool, McpTool, mcp_headers

__all__ = ["HOSTED_TOOLS", "WEB_SEARCH_TYPES", "HostedTools", "McpTool", "mcp_headers", "query_of"]

# every hosted tool kind, in the order the model sees their functions (after the client's own functions)
HOSTED_TOOLS: tuple[type[HostedTool], ...] = (FileSearchTool, WebSearchTool, McpCallTool)


class HostedTools:
    def __init__(self, tools: list[dict[str, Any]], vector_io: Any, web_search: Any, timeout_s: float):
        self.tools = tools
        deps = ToolDeps(vector_io, web_search, timeout_s)
        self.adapters = [cls([t for t in tools if t["type"] in cls.tool_types], deps) for cls in HOSTED_TOOLS]
        self._mcp = next(a for a in self.adapters if isinstance(a, McpCallTool))

    @property
    def mcp(self) -> dict[str, McpTool]:
        """Model-facing function name -> MCP tool, as listed so far."""
        return self._mcp.tools

    @mcp.setter
    def mcp(self, tools: dict[str, McpTool]) -> None:
        self._mcp.tools = tools

    # ---- MCP discovery and approval -------------------------------------------------------------------------------

    def mcp_servers(self) -> list[dict[str, Any]]:
        return self._mcp.specs

    async def list_server_tools(self, server: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._mcp.list_server_tools(server)

    def needs_approval(self, fn: str) -> bool:
        """Whether a call of this function waits for the client's approval (only MCP calls ever do)."""
        return self._mcp.matches(fn) and self._mcp.needs_approval(fn)

    def find_mcp(self, server_label: str, name: str) -> str | None:
        return self._mcp.find(server_label, name)

    # ---- what the model sees -------------------------------------------------------------------------------------

    def chat_tools(self) -> list[dict[str, Any]]:
        out = [chat_function(t["name"], t.get("description") or "", t.get("parameters") or {})
               for t in self.tools if t["type"] == "function"]
        for adapter in self.adapters:
            out += adapter.chat_functions()
        return out

    def chat_tool_choice(self, choice: dict[str, Any]) -> dict[str, Any] | None:
        """A tool_choice object naming a hosted tool -> the chat function to force (None: not ours)."""
        fn = next((f for a in self.adapters if (f := a.forced_function(choice))), None)
        return {"type": "function", "function": {"name": fn}} if fn else None

    # ---- running a call ---------------------------------------------------------------------------------------

    def adapter(self, fn: str) -> HostedTool | None:
        """The hosted tool that owns a called function; None for the client's own functions."""
        return next((a for a in self.adapters if a.matches(fn)), None)

    def kind_of(self, fn: str) -> str | None:
        """'file_search' | 'web_search' | 'mcp' for hosted tools; None for the client's own functions."""
        adapter = self.adapter(fn)
        return adapter.kind if adapter else None
