"""The response a run builds, and the typed Responses events that announce each change to it.

Every event carries the next sequence number; output items are appended as they finish, and `finish` ends the
stream with the response's final snapshot.
"""

from __future__ import annotations

import time
from typing import Any

from deployments.agents.items import message_item, output_text
from serve.protocol.openai_completions import cached_tokens
from serve.protocol.responses import CreateResponseRequest

FINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete",
                "cancelled": "response.cancelled", "failed": "response.failed"}


def new_response(req: CreateResponseRequest, response_id: str, output: list[dict]) -> dict[str, Any]:
    conversation = req.conversation_id()
    return {
        "id": response_id, "object": "response", "created_at": int(time.time()), "status": "in_progress",
        "model": req.model, "output": output, "instructions": req.instructions,
        "metadata": req.metadata or {}, "temperature": req.temperature, "top_p": req.top_p,
        "tools": req.tools, "tool_choice": req.tool_choice or "auto",
        "parallel_tool_calls": req.parallel_tool_calls,
        "max_output_tokens": req.max_output_tokens, "max_tool_calls": req.max_tool_calls,
        "previous_response_id": req.previous_response_id,
        "conversation": {"id": conversation} if conversation else None,
        "text": req.text or {"format": {"type": "text"}}, "store": req.store, "error": None,
        "incomplete_details": None, "usage": None, "guardrails": req.guardrails,
        "background": req.background, "prompt": None, "prompt_cache_key": req.prompt_cache_key,
        "truncation": req.truncation or "disabled", "top_logprobs": req.top_logprobs,
    }


def usage_object(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    """A Response's `usage`; `cached_tokens` are input tokens the engine found in its prefix cache (no reasoning
    tokens here: that count is 0)."""
    return {"input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


class ResponseEvents:
    def __init__(self, req: CreateResponseRequest, response_id: str):
        self.seq = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0}
        self.output: list[dict] = []
        self.citations: list[dict] = []  # annotations of the final message, from the hosted tools' results
        self.response = new_response(req, response_id, self.output)

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "sequence_number": self.seq, **fields}

    def snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": list(self.output),
                "usage": usage_object(self.usage["input_tokens"], self.usage["output_tokens"],
                                      self.usage["cached_tokens"])}

    def count_usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.usage["input_tokens"] += usage["prompt_tokens"]
            self.usage["output_tokens"] += usage["completion_tokens"]
            self.usage["cached_tokens"] += cached_tokens(usage)

    def cite(self, citations: list[dict[str, Any]]) -> None:
        for c in citations:
            key = c.get("file_id") or c.get("url")
            if all((k.get("file_id") or k.get("url")) != key for k in self.citations):
                self.citations.append(c)

    # ---- the assistant's message --------------------------------------------------------------------------------

    def open_message(self, msg_id: str) -> list[dict[str, Any]]:
        item = {"type": "message", "id": msg_id, "role": "assistant", "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [self.event("response.output_item.added", output_index=len(self.output), item=item),
                self.event("response.content_part.added", item_id=msg_id, output_index=len(self.output),
                           content_index=0, part=part)]

    def text_delta(self, msg_id: str, delta: str, logprobs: list[dict] | None = None) -> dict[str, Any]:
        return self.event("response.output_text.delta", item_id=msg_id, output_index=len(self.output),
                          content_index=0, delta=delta, logprobs=logprobs or [])

    def close_message(self, msg_id: str, text: str, logprobs: list[dict] | None = None) -> list[dict[str, Any]]:
        annotations = [{**c, "index": len(text)} if c["type"] == "file_citation"
                       else {**c, "start_index": 0, "end_index": len(text)} for c in self.citations]
        item = message_item(text, annotations, msg_id, logprobs)
        idx = len(self.output)
        self.output.append(item)
        return [self.event("response.output_text.done", item_id=msg_id, output_index=idx, content_index=0,
                           text=text, logprobs=logprobs or []),
                self.event("response.content_part.done", item_id=msg_id, output_index=idx, content_index=0,
                           part=item["content"][0]),
                self.event("response.output_item.done", output_index=idx, item=item)]

    # ---- other output items -------------------------------------------------------------------------------------

    def item(self, item: dict[str, Any], added: dict[str, Any] | None = None,
             arguments: str | None = None) -> list[dict[str, Any]]:
        """A finished item (a refusal, a function call, an approval request) with its added/done events."""
        idx = len(self.output)
        self.output.append(item)
        events = [self.event("response.output_item.added", output_index=idx, item=added or item)]
        if arguments is not None:  # a function call's arguments, streamed as one delta
            events += [self.event("response.function_call_arguments.delta", item_id=item["id"], output_index=idx,
                                  delta=arguments),
                       self.event("response.function_call_arguments.done", item_id=item["id"], output_index=idx,
                                  arguments=arguments, name=item["name"])]
        return events + [self.event("response.output_item.done", output_index=idx, item=item)]

    def finish(self, status: str, reason: str | None = None) -> dict[str, Any]:
        """The final event: the response's status and its last snapshot."""
        self.response["status"] = status
        if reason:
            self.response["incomplete_details"] = {"reason": reason}
        snap = self.snapshot()
        snap["output_text"] = output_text(self.output)
        return self.event(FINAL_EVENTS[status], response=snap)
