"""The Responses loop: model call -> tools -> model call ..., as one stream of typed Responses events.

Non-streaming requests consume the same stream and return the final response, so both paths share one loop.
The loop is bounded (max_infer_iters, max_tool_calls, max_output_tokens) and a failing tool becomes an error
result the model sees, never a crash. Cancellation is read from the store between iterations.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from deployments.agents.hosted_tools import HostedTools, query_of
from deployments.agents.items import (
    message_item,
    new_id,
    output_text,
    refusal_item,
    search_results_text,
    to_chat_messages,
)
from deployments.agents.tools.mcp import ToolError
from deployments.agents.tools.web_search import results_text
from serve.errors import InvalidRequestError
from serve.protocol.openai_chat import ChatCompletionRequest
from serve.protocol.responses import CreateResponseRequest
from serve.telemetry.agents import agent_iteration

CANCEL_POLL_S = 0.25  # how often a running generation looks for a cancel in the store


class ResponseRun:
    def __init__(self, req: CreateResponseRequest, response_id: str, history: list[dict], input_items: list[dict],
                 llm: Any, hosted: HostedTools, safety: Any, is_cancelled: Callable[[], Any]):
        self.req = req
        self.llm = llm
        self.hosted = hosted
        self.safety = safety
        self.is_cancelled = is_cancelled
        self.history = history
        self.input_items = input_items
        self.seq = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.output: list[dict] = []
        self.citations: list[dict] = []
        self.user_text = ""
        self.response = {
            "id": response_id, "object": "response", "created_at": int(time.time()), "status": "in_progress",
            "model": req.model, "output": self.output, "instructions": req.instructions,
            "metadata": req.metadata or {}, "temperature": req.temperature, "top_p": req.top_p,
            "tools": req.tools, "tool_choice": req.tool_choice or "auto",
            "parallel_tool_calls": req.parallel_tool_calls,
            "max_output_tokens": req.max_output_tokens, "max_tool_calls": req.max_tool_calls,
            "previous_response_id": req.previous_response_id,
            "conversation": {"id": req.conversation_id()} if req.conversation_id() else None,
            "text": req.text or {"format": {"type": "text"}}, "store": req.store, "error": None,
            "incomplete_details": None, "usage": None, "guardrails": req.guardrails,
            "background": req.background,
        }

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "sequence_number": self.seq, **fields}

    def _snapshot(self) -> dict[str, Any]:
        u = self.usage
        return {**self.response, "output": list(self.output),
                "usage": {"input_tokens": u["input_tokens"],
                          "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                          "output_tokens": u["output_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": u["input_tokens"] + u["output_tokens"]}}

    # ---- pieces -----------------------------------------------------------------------------------------------

    def _tool_choice(self, iteration: int) -> Any:
        choice = self.req.tool_choice
        if iteration > 0 and choice not in (None, "auto", "none"):
            return "none"  # a forced choice forces one round of calls; then the model answers from the results
        if isinstance(choice, dict):
            if choice.get("type") == "function":
                return {"type": "function", "function": {"name": choice.get("name")}}
            if choice.get("type") == "allowed_tools":
                return choice.get("mode", "auto")
            forced = self.hosted.chat_tool_choice(choice)
            if forced is None:
                raise InvalidRequestError("tool_choice must be auto, none, required or one of the request's tools",
                                          param="tool_choice")
            return forced
        return choice

    def _response_format(self) -> dict | None:
        fmt = (self.req.text or {}).get("format") or {"type": "text"}
        if fmt.get("type") == "json_schema":
            return {"type": "json_schema", "json_schema": {
                "name": fmt.get("name", "output"), "schema": fmt.get("schema"), "strict": fmt.get("strict", True)}}
        if fmt.get("type") in ("json_object", "text"):
            return {"type": fmt["type"]}
        raise InvalidRequestError(f"text.format type {fmt.get('type')!r} is not supported", param="text.format")

    async def _violation(self, text: str, role: str) -> str | None:
        for g in self.req.guardrails or []:
            shield = g if isinstance(g, str) else g.get("id") or g.get("shield_id")
            r = await self.safety.run_shield.remote(shield, [{"role": role, "content": text}], {})
            if r["violation"]:
                return r["violation"]["user_message"] or "This request violates a safety policy."
        return None

    # ---- the loop ---------------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        yield self._event("response.created", response=self._snapshot())
        yield self._event("response.in_progress", response=self._snapshot())
        user_text = "\n".join(m["content"] for m in to_chat_messages(self.input_items)
                              if m["role"] == "user" and m["content"])
        self.user_text = user_text.strip()
        refusal = await self._violation(user_text, "user") if user_text and self.req.guardrails else None
        if refusal:
            async for e in self._emit_item(refusal_item(refusal)):
                yield e
            yield self._finish("completed")
            return
        messages = ([{"role": "system", "content": self.req.instructions}] if self.req.instructions else [])
        messages += to_chat_messages(self.history + self.input_items)
        for server in self.hosted.mcp_servers():
            async for e in self._list_mcp_tools(server):
                yield e
        async for e in self._answer_approvals(messages):
            yield e
        tools, fmt = self.hosted.chat_tools(), self._response_format()
        tool_calls_made = 0
        for iteration in range(self.req.max_infer_iters):
            agent_iteration(iteration)
            if await self.is_cancelled():
                yield self._finish("cancelled")
                return
            budget = None
            if self.req.max_output_tokens is not None:
                budget = self.req.max_output_tokens - self.usage["output_tokens"]
                if budget <= 0:
                    yield self._finish("incomplete", reason="max_output_tokens")
                    return
            allow_tools = tools and (self.req.max_tool_calls is None or tool_calls_made < self.req.max_tool_calls)
            chat = ChatCompletionRequest(
                model=self.req.model, messages=messages, temperature=self.req.temperature, top_p=self.req.top_p,
                seed=self.req.seed, max_tokens=budget, tools=tools or None,
                tool_choice=self._tool_choice(iteration) if allow_tools else ("none" if tools else None),
                response_format=fmt, stream=True, stream_options={"include_usage": True})
            text, calls, finish = "", [], None
            msg_id, started = new_id("msg"), False
            buffer = bool(self.req.guardrails)  # output guardrails judge the whole text before it is shown
            stream = self.llm.options(stream=True).chat_stream.remote(chat)
            checked = time.monotonic()
            async for chunk in _chunks(stream):
                if time.monotonic() - checked > CANCEL_POLL_S:  # a cancel stops generation mid-stream too
                    checked = time.monotonic()
                    if await self.is_cancelled():
                        stream.cancel()
                        yield self._finish("cancelled")
                        return
                if chunk.get("usage"):
                    self.usage["input_tokens"] += chunk["usage"]["prompt_tokens"]
                    self.usage["output_tokens"] += chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    delta = choice.get("delta", {})
                    calls += delta.get("tool_calls") or []
                    finish = choice.get("finish_reason") or finish
                    piece = delta.get("content")
                    if piece:
                        text += piece
                        if not buffer:
                            if not started:
                                started = True
                                for e in self._open_message(msg_id):
                                    yield e
                            yield self._event("response.output_text.delta", item_id=msg_id,
                                              output_index=len(self.output), content_index=0, delta=piece,
                                              logprobs=[])
            merged = _merge_tool_calls(calls)
            if merged:
                tool_calls_made += len(merged)
                done = False
                async for e in self._run_tools(merged, messages):
                    if e is None:
                        done = True
                    else:
                        yield e
                if done:  # client-side function calls: the client continues with function_call_output
                    yield self._finish("completed")
                    return
                continue
            if buffer and text:
                refusal = await self._violation(text, "assistant")
                if refusal:
                    async for e in self._emit_item(refusal_item(refusal)):
                        yield e
                    yield self._finish("completed")
                    return
                for e in self._open_message(msg_id):
                    yield e
                yield self._event("response.output_text.delta", item_id=msg_id, output_index=len(self.output),
                                  content_index=0, delta=text, logprobs=[])
                started = True
            if not started:
                for e in self._open_message(msg_id):
                    yield e
            for e in self._close_message(msg_id, text):
                yield e
            if finish == "length":
                yield self._finish("incomplete", reason="max_output_tokens")
            else:
                yield self._finish("completed")
            return
        yield self._finish("incomplete", reason="max_infer_iters")

    def _open_message(self, msg_id: str) -> list[dict[str, Any]]:
        item = {"type": "message", "id": msg_id, "role": "assistant", "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [self._event("response.output_item.added", output_index=len(self.output), item=item),
                self._event("response.content_part.added", item_id=msg_id, output_index=len(self.output),
                            content_index=0, part=part)]

    def _close_message(self, msg_id: str, text: str) -> list[dict[str, Any]]:
        annotations = [{**c, "index": len(text)} if c["type"] == "file_citation"
                       else {**c, "start_index": 0, "end_index": len(text)} for c in self.citations]
        item = message_item(text, annotations, msg_id)
        idx = len(self.output)
        self.output.append(item)
        return [self._event("response.output_text.done", item_id=msg_id, output_index=idx, content_index=0,
                            text=text, logprobs=[]),
                self._event("response.content_part.done", item_id=msg_id, output_index=idx, content_index=0,
                            part=item["content"][0]),
                self._event("response.output_item.done", output_index=idx, item=item)]

    async def _emit_item(self, item: dict[str, Any], added: dict[str, Any] | None = None,
                         arguments: str | None = None) -> AsyncIterator[dict[str, Any]]:
        idx = len(self.output)
        self.output.append(item)
        yield self._event("response.output_item.added", output_index=idx, item=added or item)
        if arguments is not None:  # a function call's arguments, streamed as one delta
            yield self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=idx,
                              delta=arguments)
            yield self._event("response.function_call_arguments.done", item_id=item["id"], output_index=idx,
                              arguments=arguments, name=item["name"])
        yield self._event("response.output_item.done", output_index=idx, item=item)

    async def _run_tools(self, calls: list[dict], messages: list[dict]) -> AsyncIterator[dict[str, Any] | None]:
        """Hosted tools run here and feed the next model call. Client functions and MCP calls that wait for
        approval end the response: the client continues it (a None in the stream says so)."""
        handback = False
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        for call in calls:
            fn, args = call["function"]["name"], call["function"].get("arguments") or "{}"
            kind = self.hosted.kind_of(fn)
            if kind is None:
                handback = True
                item = {"type": "function_call", "id": new_id("fc"), "call_id": call["id"], "name": fn,
                        "arguments": args, "status": "completed"}
                async for e in self._emit_item(item, {**item, "arguments": "", "status": "in_progress"},
                                               arguments=args):
                    yield e
                continue
            if kind == "mcp" and self.hosted.needs_approval(fn):
                handback = True
                tool = self.hosted.mcp[fn]
                item = {"type": "mcp_approval_request", "id": new_id("mcpr"), "server_label": tool.label,
                        "name": tool.name, "arguments": args}
                async for e in self._emit_item(item):
                    yield e
                messages.append({"role": "tool", "tool_call_id": call["id"],
                                 "content": "This call is waiting for the user's approval."})
                continue
            async for e in self._hosted_call(kind, fn, args, call["id"], messages):
                yield e
        if handback:
            yield None

    async def _hosted_call(self, kind: str, fn: str, args: str, call_id: str, messages: list[dict],
                           approval_request_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """One hosted tool call as an output item with its typed events; its result becomes a tool message."""
        if kind == "mcp":
            tool = self.hosted.mcp[fn]
            item = {"type": "mcp_call", "id": new_id("mcp"), "server_label": tool.label, "name": tool.name,
                    "arguments": args, "output": None, "error": None, "status": "in_progress"}
            if approval_request_id:
                item["approval_request_id"] = approval_request_id
            prefix = "response.mcp_call"
        elif kind == "file_search":
            item = {"type": "file_search_call", "id": new_id("fs"), "status": "in_progress", "queries": [],
                    "results": None}
            prefix = "response.file_search_call"
        else:
            item = {"type": "web_search_call", "id": new_id("ws"), "status": "in_progress",
                    "action": {"type": "search", "query": query_of(args)}}
            prefix = "response.web_search_call"
        idx = len(self.output)
        yield self._event("response.output_item.added", output_index=idx, item=dict(item))
        yield self._event(f"{prefix}.in_progress", item_id=item["id"], output_index=idx)
        if kind == "mcp":
            yield self._event("response.mcp_call_arguments.delta", item_id=item["id"], output_index=idx, delta=args)
            yield self._event("response.mcp_call_arguments.done", item_id=item["id"], output_index=idx,
                              arguments=args)
        else:
            yield self._event(f"{prefix}.searching", item_id=item["id"], output_index=idx)
        try:  # a failing tool is a result the model sees, not a crash
            if kind == "mcp":
                content = item["output"] = await self.hosted.run_mcp(fn, args)
            elif kind == "file_search":
                # the model's query, and the user's own words: small models write poor queries
                item["queries"] = [q for q in dict.fromkeys([query_of(args), self.user_text]) if q]
                results = await self.hosted.run_file_search(item["queries"])
                if "file_search_call.results" in (self.req.include or []):
                    item["results"] = results
                self._cite([{"type": "file_citation", "file_id": r["file_id"], "filename": r["filename"]}
                            for r in results])
                content = search_results_text(results)
            else:
                results = await self.hosted.run_web_search(item["action"]["query"] or self.user_text)
                item["action"]["sources"] = [{"type": "url", "url": r["url"]} for r in results]
                self._cite([{"type": "url_citation", "url": r["url"], "title": r["title"]} for r in results])
                content = results_text(results)
            item["status"] = "completed"
        except Exception as e:
            item["status"] = "failed"
            message = str(e) if isinstance(e, ToolError) else f"{type(e).__name__}: {e}"
            item["error"] = ({"type": "mcp_tool_execution_error", "content": message} if kind == "mcp"
                             else message)
            content = f"The tool failed: {message}"
        self.output.append(item)
        done = "failed" if item["status"] == "failed" and kind == "mcp" else "completed"
        yield self._event(f"{prefix}.{done}", item_id=item["id"], output_index=idx)
        yield self._event("response.output_item.done", output_index=idx, item=item)
        messages.append({"role": "tool", "tool_call_id": call_id, "content": content})

    def _cite(self, citations: list[dict[str, Any]]) -> None:
        for c in citations:
            key = c.get("file_id") or c.get("url")
            if all((k.get("file_id") or k.get("url")) != key for k in self.citations):
                self.citations.append(c)

    async def _list_mcp_tools(self, server: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        item = {"type": "mcp_list_tools", "id": new_id("mcpl"), "server_label": server["server_label"], "tools": []}
        idx = len(self.output)
        yield self._event("response.output_item.added", output_index=idx, item=dict(item))
        yield self._event("response.mcp_list_tools.in_progress", item_id=item["id"], output_index=idx)
        try:
            item["tools"] = await self.hosted.list_server_tools(server)
            done = "completed"
        except ToolError as e:  # the model goes on without this server's tools
            item["error"], done = str(e), "failed"
        self.output.append(item)
        yield self._event(f"response.mcp_list_tools.{done}", item_id=item["id"], output_index=idx)
        yield self._event("response.output_item.done", output_index=idx, item=item)

    async def _answer_approvals(self, messages: list[dict]) -> AsyncIterator[dict[str, Any]]:
        """mcp_approval_response inputs: run the approved calls (denied ones tell the model so)."""
        requests = {it["id"]: it for it in self.history if it.get("type") == "mcp_approval_request"}
        for answer in [it for it in self.input_items if it.get("type") == "mcp_approval_response"]:
            req = requests[answer["approval_request_id"]]  # checked when the response was prepared
            fn = self.hosted.find_mcp(req["server_label"], req["name"])
            call_id = new_id("call")
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": fn or req["name"],
                                                                 "arguments": req["arguments"]}}]})
            if answer.get("approve") and fn is not None:
                async for e in self._hosted_call("mcp", fn, req["arguments"], call_id, messages, req["id"]):
                    yield e
            else:
                reason = answer.get("reason") or "no reason given"
                messages.append({"role": "tool", "tool_call_id": call_id,
                                 "content": f"The user did not approve this call ({reason})."})

    def _finish(self, status: str, reason: str | None = None) -> dict[str, Any]:
        self.response["status"] = status
        if reason:
            self.response["incomplete_details"] = {"reason": reason}
        kind = {"completed": "response.completed", "incomplete": "response.incomplete",
                "cancelled": "response.cancelled", "failed": "response.failed"}[status]
        snap = self._snapshot()
        snap["output_text"] = output_text(self.output)
        return self._event(kind, response=snap)


def _merge_tool_calls(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed tool-call deltas (OpenAI chunk shape) -> complete calls."""
    calls: dict[int, dict[str, Any]] = {}
    for d in deltas:
        c = calls.setdefault(d.get("index", 0), {"id": None, "type": "function",
                                                 "function": {"name": "", "arguments": ""}})
        c["id"] = d.get("id") or c["id"]
        fn = d.get("function") or {}
        c["function"]["name"] += fn.get("name") or ""
        c["function"]["arguments"] += fn.get("arguments") or ""
    return [calls[k] for k in sorted(calls)]


async def _chunks(stream: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[dict[str, Any]]:
    """The LLM deployment streams lists of chat chunks; one chunk at a time."""
    async for batch in stream:
        for chunk in batch:
            yield chunk
