"""The tool side of a Responses turn: MCP tool listings, answered approvals, and a round of the model's calls.

Hosted tools run here and their results become tool messages for the next model call. Client functions and MCP
calls that wait for approval hand the response back to the client (`handed_back`), which continues it.
A failing tool is a result the model sees, never a crash.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from deployments.agents.hosted_tools import HostedTools
from deployments.agents.items import new_id
from deployments.agents.response_events import ResponseEvents
from deployments.agents.tools.hosted import CallContext, HostedTool
from deployments.agents.tools.mcp import ToolError
from serve.errors import to_api_error


class ToolSteps:
    def __init__(self, out: ResponseEvents, hosted: HostedTools, ctx: CallContext):
        self.out = out
        self.hosted = hosted
        self.ctx = ctx
        self.handed_back = False  # the last round ended with calls the client must answer

    async def list_mcp_tools(self, server: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One MCP server's tools as an mcp_list_tools item; a server that fails leaves the model without them."""
        item = {"type": "mcp_list_tools", "id": new_id("mcpl"), "server_label": server["server_label"], "tools": []}
        idx = len(self.out.output)
        yield self.out.event("response.output_item.added", output_index=idx, item=dict(item))
        yield self.out.event("response.mcp_list_tools.in_progress", item_id=item["id"], output_index=idx)
        try:
            item["tools"] = await self.hosted.list_server_tools(server)
            done = "completed"
        except ToolError as e:
            item["error"], done = str(e), "failed"
        self.out.output.append(item)
        yield self.out.event(f"response.mcp_list_tools.{done}", item_id=item["id"], output_index=idx)
        yield self.out.event("response.output_item.done", output_index=idx, item=item)

    async def answer_approvals(self, history: list[dict], input_items: list[dict],
                               messages: list[dict]) -> AsyncIterator[dict[str, Any]]:
        """mcp_approval_response inputs: run the approved calls (denied ones tell the model so)."""
        requests = {it["id"]: it for it in history if it.get("type") == "mcp_approval_request"}
        for answer in [it for it in input_items if it.get("type") == "mcp_approval_response"]:
            req = requests[answer["approval_request_id"]]  # checked when the response was prepared
            fn = self.hosted.find_mcp(req["server_label"], req["name"])
            call_id = new_id("call")
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": fn or req["name"],
                                                                 "arguments": req["arguments"]}}]})
            if answer.get("approve") and fn is not None:
                async for e in self.hosted_call(self.hosted.adapter(fn), fn, req["arguments"], call_id, messages,
                                                req["id"]):
                    yield e
            else:
                reason = answer.get("reason") or "no reason given"
                messages.append({"role": "tool", "tool_call_id": call_id,
                                 "content": f"The user did not approve this call ({reason})."})

    async def run(self, calls: list[dict], messages: list[dict]) -> AsyncIterator[dict[str, Any]]:
        """One round of the model's tool calls, in order."""
        self.handed_back = False
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        for call in calls:
            fn, args = call["function"]["name"], call["function"].get("arguments") or "{}"
            tool = self.hosted.adapter(fn)
            if tool is None:
                self.handed_back = True
                for e in self._client_call(call["id"], fn, args):
                    yield e
            elif self.hosted.needs_approval(fn):
                self.handed_back = True
                for e in self._approval_request(call["id"], fn, args, messages):
                    yield e
            else:
                async for e in self.hosted_call(tool, fn, args, call["id"], messages):
                    yield e

    def _client_call(self, call_id: str, fn: str, args: str) -> list[dict[str, Any]]:
        item = {"type": "function_call", "id": new_id("fc"), "call_id": call_id, "name": fn, "arguments": args,
                "status": "completed"}
        return self.out.item(item, {**item, "arguments": "", "status": "in_progress"}, arguments=args)

    def _approval_request(self, call_id: str, fn: str, args: str, messages: list[dict]) -> list[dict[str, Any]]:
        tool = self.hosted.mcp[fn]
        item = {"type": "mcp_approval_request", "id": new_id("mcpr"), "server_label": tool.label,
                "name": tool.name, "arguments": args}
        messages.append({"role": "tool", "tool_call_id": call_id,
                         "content": "This call is waiting for the user's approval."})
        return self.out.item(item)

    async def hosted_call(self, tool: HostedTool, fn: str, args: str, call_id: str, messages: list[dict],
                          approval_request_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """One hosted tool call as an output item with its typed events; its result becomes a tool message."""
        item = tool.start(fn, args)
        if approval_request_id:
            item["approval_request_id"] = approval_request_id
        idx = len(self.out.output)
        yield self.out.event("response.output_item.added", output_index=idx, item=dict(item))
        yield self.out.event(f"{tool.events}.in_progress", item_id=item["id"], output_index=idx)
        for kind, fields in tool.progress(args):
            yield self.out.event(kind, item_id=item["id"], output_index=idx, **fields)
        content = await self._call(tool, fn, item, args)
        self.out.output.append(item)
        done = "failed" if tool.failed_event and item["status"] == "failed" else "completed"
        yield self.out.event(f"{tool.events}.{done}", item_id=item["id"], output_index=idx)
        yield self.out.event("response.output_item.done", output_index=idx, item=item)
        messages.append({"role": "tool", "tool_call_id": call_id, "content": content})

    async def _call(self, tool: HostedTool, fn: str, item: dict[str, Any], args: str) -> str:
        """Runs the call, completing or failing its item; returns what the model reads next."""
        try:  # a failing tool is a result the model sees, not a crash
            result = await tool.call(fn, item, args, self.ctx)
        except Exception as e:
            message = str(e) if isinstance(e, ToolError) else to_api_error(e).message
            tool.fail(item, message)
            return f"The tool failed: {message}"
        item["status"] = "completed"
        self.out.cite(result.citations)
        return result.content
