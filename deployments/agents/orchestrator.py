"""The Responses loop: model call -> tools -> model call ..., as one stream of typed Responses events.

Non-streaming requests consume the same stream and return the final response, so both paths share one loop.
The loop is bounded (max_infer_iters, max_tool_calls, max_output_tokens) and a failing tool becomes an error
result the model sees, never a crash. Cancellation is read from the store between iterations.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from deployments.agents.items import (
    message_item,
    new_id,
    output_text,
    refusal_item,
    search_results_text,
    to_chat_messages,
)
from serve.errors import InvalidRequestError
from serve.protocol.openai_chat import ChatCompletionRequest
from serve.protocol.responses import CreateResponseRequest
from serve.protocol.vector_io import SearchRequest
from serve.telemetry.agents import agent_iteration, tool_span

FILE_SEARCH_TOOL = {"type": "function", "function": {
    "name": "file_search", "description": "Search the knowledge base (uploaded files) for passages about a query.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}


class ResponseRun:
    def __init__(self, req: CreateResponseRequest, response_id: str, history: list[dict], input_items: list[dict],
                 llm: Any, vector_io: Any, safety: Any, is_cancelled: Callable[[], Any]):
        self.req = req
        self.llm = llm
        self.vector_io = vector_io
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
        }

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "sequence_number": self.seq, **fields}

    def _snapshot(self) -> dict[str, Any]:
        u = self.usage
        return {**self.response, "output": list(self.output),
                "usage": {"input_tokens": u["input_tokens"], "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": u["output_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": u["input_tokens"] + u["output_tokens"]}}

    # ---- pieces -----------------------------------------------------------------------------------------------

    def _chat_tools(self) -> list[dict[str, Any]]:
        tools = []
        for t in self.req.tools:
            if t["type"] == "function":
                tools.append({"type": "function", "function": {"name": t["name"], "description": t.get("description"),
                                                               "parameters": t.get("parameters") or {}}})
            elif t["type"] == "file_search" and FILE_SEARCH_TOOL not in tools:
                tools.append(FILE_SEARCH_TOOL)
        return tools

    def _tool_choice(self, iteration: int) -> Any:
        choice = self.req.tool_choice
        if iteration > 0 and choice not in (None, "auto", "none"):
            return "none"  # a forced choice forces one round of calls; then the model answers from the results
        if isinstance(choice, dict):
            if choice.get("type") == "function":
                return {"type": "function", "function": {"name": choice.get("name")}}
            if choice.get("type") == "file_search":
                return {"type": "function", "function": {"name": "file_search"}}
            raise InvalidRequestError("tool_choice must be auto, none, required or a tool", param="tool_choice")
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

    @tool_span("file_search")
    async def _file_search(self, queries: list[str]) -> list[dict[str, Any]]:
        results = []
        for t in self.req.tools:
            if t["type"] != "file_search":
                continue
            req = SearchRequest(query=queries, max_num_results=t.get("max_num_results", 10), filters=t.get("filters"),
                                ranking_options=t.get("ranking_options"))
            for vs in t["vector_store_ids"]:
                page = await self.vector_io.call.remote("stores", "search", vs, req)
                results += [{"file_id": d["file_id"], "filename": d["filename"], "score": d["score"],
                             "attributes": d["attributes"], "text": d["content"][0]["text"]} for d in page["data"]]
        limit = min([t.get("max_num_results", 10) for t in self.req.tools if t["type"] == "file_search"] or [10])
        return sorted(results, key=lambda r: -r["score"])[:limit]

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
        tools, fmt = self._chat_tools(), self._response_format()
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
            async for chunk in stream:
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
        annotations = [{"type": "file_citation", "file_id": c["file_id"], "filename": c["filename"],
                        "index": len(text)} for c in self.citations]
        item = message_item(text, annotations, msg_id)
        idx = len(self.output)
        self.output.append(item)
        return [self._event("response.output_text.done", item_id=msg_id, output_index=idx, content_index=0,
                            text=text, logprobs=[]),
                self._event("response.content_part.done", item_id=msg_id, output_index=idx, content_index=0,
                            part=item["content"][0]),
                self._event("response.output_item.done", output_index=idx, item=item)]

    async def _emit_item(self, item: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        idx = len(self.output)
        self.output.append(item)
        yield self._event("response.output_item.added", output_index=idx, item=item)
        yield self._event("response.output_item.done", output_index=idx, item=item)

    async def _run_tools(self, calls: list[dict], messages: list[dict]) -> AsyncIterator[dict[str, Any] | None]:
        """Server-side tools run here and feed the next model call; function calls end the response (None)."""
        client_side = False
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        for call in calls:
            name, args = call["function"]["name"], call["function"].get("arguments") or "{}"
            if name == "file_search" and any(t["type"] == "file_search" for t in self.req.tools):
                item = {"type": "file_search_call", "id": new_id("fs"), "status": "in_progress", "queries": [],
                        "results": None}
                idx = len(self.output)
                yield self._event("response.output_item.added", output_index=idx, item=dict(item))
                yield self._event("response.file_search_call.in_progress", item_id=item["id"], output_index=idx)
                try:
                    # the model's query, and the user's own words: small models write poor queries
                    query = str(json.loads(args).get("query") or "").strip()
                    item["queries"] = [q for q in dict.fromkeys([query, self.user_text]) if q]
                    yield self._event("response.file_search_call.searching", item_id=item["id"], output_index=idx)
                    results = await self._file_search(item["queries"])
                    item["status"] = "completed"
                except Exception as e:  # a failing tool is a result the model sees, not a crash
                    results, item["status"] = [], "failed"
                    item["error"] = str(e)
                item["results"] = results if "file_search_call.results" in (self.req.include or []) else None
                for r in results:
                    if r["file_id"] not in [c["file_id"] for c in self.citations]:
                        self.citations.append({"file_id": r["file_id"], "filename": r["filename"]})
                self.output.append(item)
                yield self._event("response.file_search_call.completed", item_id=item["id"], output_index=idx)
                yield self._event("response.output_item.done", output_index=idx, item=item)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": search_results_text(results)})
            else:
                client_side = True
                item = {"type": "function_call", "id": new_id("fc"), "call_id": call["id"], "name": name,
                        "arguments": args, "status": "completed"}
                idx = len(self.output)
                yield self._event("response.output_item.added", output_index=idx,
                                  item={**item, "arguments": "", "status": "in_progress"})
                yield self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=idx,
                                  delta=args)
                yield self._event("response.function_call_arguments.done", item_id=item["id"], output_index=idx,
                                  arguments=args, name=name)
                self.output.append(item)
                yield self._event("response.output_item.done", output_index=idx, item=item)
        if client_side:
            yield None

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
