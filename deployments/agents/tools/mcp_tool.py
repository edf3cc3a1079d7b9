"""The MCP hosted tool: discovers each request server's tools, names them for the model, and runs their calls.

Its output item is an `mcp_call`; its arguments stream as events, a failed call ends with `.failed`, and calls a
server's `require_approval` rule covers wait for the client's approval instead of running.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deployments.agents.items import new_id
from deployments.agents.tools.hosted import (
    FILE_SEARCH,
    WEB_SEARCH,
    CallContext,
    HostedTool,
    ToolDeps,
    ToolResult,
    chat_function,
)
from deployments.agents.tools.mcp import ToolError, call_mcp_tool, list_mcp_tools
from serve.telemetry.agents import tool_span


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


class McpCallTool(HostedTool):
    kind, tool_types, events, failed_event = "mcp", ("mcp",), "response.mcp_call", True

    def __init__(self, specs: list[dict[str, Any]], deps: ToolDeps):
        super().__init__(specs, deps)
        self.tools: dict[str, McpTool] = {}  # model-facing function name -> MCP tool

    async def list_server_tools(self, server: dict[str, Any]) -> list[dict[str, Any]]:
        """Lists one server's tools (filtered by allowed_tools) and registers them for the model."""
        listed = await list_mcp_tools(server["server_url"], mcp_headers(server), self.deps.timeout_s)
        allowed = _names(server.get("allowed_tools"))
        listed = [t for t in listed if allowed is None or t["name"] in allowed]
        for t in listed:
            fn = t["name"]
            if fn in self.tools or fn in (FILE_SEARCH, WEB_SEARCH):
                fn = f"{server['server_label']}__{t['name']}"
            self.tools[fn] = McpTool(server, t["name"], t["description"], t["input_schema"])
        return listed

    def matches(self, fn: str) -> bool:
        return fn in self.tools

    def chat_functions(self) -> list[dict[str, Any]]:
        return [chat_function(fn, tool.description, tool.input_schema) for fn, tool in self.tools.items()]

    def forced_function(self, choice: dict[str, Any]) -> str | None:
        if choice.get("type") != "mcp":
            return None
        return next((fn for fn, tool in self.tools.items() if tool.label == choice.get("server_label")
                     and tool.name == (choice.get("name") or tool.name)), None)

    def needs_approval(self, fn: str) -> bool:
        tool = self.tools[fn]
        rule = tool.server.get("require_approval", "never")
        if isinstance(rule, str):
            return rule == "always"
        never = _names(rule.get("never")) or []
        always = _names(rule.get("always"))
        if tool.name in never:
            return False
        return always is None or tool.name in always

    def find(self, server_label: str, name: str) -> str | None:
        return next((fn for fn, t in self.tools.items() if t.label == server_label and t.name == name), None)

    def start(self, fn: str, args: str) -> dict[str, Any]:
        tool = self.tools[fn]
        return {"type": "mcp_call", "id": new_id("mcp"), "server_label": tool.label, "name": tool.name,
                "arguments": args, "output": None, "error": None, "status": "in_progress"}

    def progress(self, args: str) -> list[tuple[str, dict[str, Any]]]:
        return [("response.mcp_call_arguments.delta", {"delta": args}),
                ("response.mcp_call_arguments.done", {"arguments": args})]

    async def call(self, fn: str, item: dict[str, Any], args: str, ctx: CallContext) -> ToolResult:
        item["output"] = await self.run(fn, args)
        return ToolResult(item["output"])

    def fail(self, item: dict[str, Any], message: str) -> None:
        item["status"], item["error"] = "failed", {"type": "mcp_tool_execution_error", "content": message}

    @tool_span("mcp")
    async def run(self, fn: str, arguments: str) -> str:
        tool = self.tools[fn]
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError as e:
            raise ToolError(f"the arguments are not valid JSON: {e}") from None
        if not isinstance(args, dict):
            raise ToolError("the arguments must be a JSON object")
        return await call_mcp_tool(tool.server["server_url"], tool.name, args, mcp_headers(tool.server),
                                   self.deps.timeout_s)
