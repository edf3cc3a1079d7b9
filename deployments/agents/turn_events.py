"""Responses events -> Llama Stack 0.2 agent turn stream chunks (turn_start, step_*, turn_complete, ...).

A turn is one run of the Responses loop. Each model call becomes an inference step; each server-side tool call
(file_search for builtin::rag, mcp, web_search) becomes a tool_execution step; client tools (function calls) end
the run and the turn waits for input. A model call that asks for several tools at once shows up as one inference
step per call: the Responses stream does not mark where a model call starts, only what it produced.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from deployments.agents.llama_agents import now_iso
from deployments.vector_io.llama_stack import knowledge_search_result
from serve.errors import APIError

TOOL_ITEMS = {"file_search_call": "knowledge_search", "web_search_call": "web_search"}  # item type -> tool name


def chunk(payload: dict[str, Any]) -> dict[str, Any]:
    return {"event": {"payload": payload}}


def tool_call(item: dict[str, Any]) -> dict[str, Any]:
    """A Responses tool item as a Llama Stack ToolCall {call_id, tool_name, arguments, arguments_json}."""
    kind = item["type"]
    if kind == "file_search_call":
        args: Any = {"query": (item.get("queries") or [""])[0]}
    elif kind == "web_search_call":
        args = {"query": (item.get("action") or {}).get("query", "")}
    else:
        raw = item.get("arguments") or "{}"
        try:
            args = json.loads(raw)
        except ValueError:
            args = raw
    name = TOOL_ITEMS.get(kind) or item.get("name") or kind
    call_id = item.get("call_id") or item["id"]
    return {"call_id": call_id, "tool_name": name, "arguments": args, "arguments_json": json.dumps(args)}


def tool_response(item: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
    """What a server-side tool returned, in Llama Stack's ToolResponse shape."""
    kind, metadata = item["type"], None
    if kind == "file_search_call":
        result = knowledge_search_result([(r["file_id"], r["text"], r["score"]) for r in item.get("results") or []])
        content, metadata = result["content"], result["metadata"]
        if item.get("status") == "failed":
            content = f"knowledge_search failed: {item.get('error', 'unknown error')}"
    elif kind == "web_search_call":
        sources = (item.get("action") or {}).get("sources") or []
        content = "\n".join(s.get("url", "") for s in sources) or item.get("error") or "no results"
        metadata = {"sources": sources}
    else:  # mcp_call: its output, or its error ({"type": ..., "content": message})
        error = item.get("error")
        content = item.get("output") or (error.get("content") if isinstance(error, dict) else error) or ""
    return {"call_id": call["call_id"], "tool_name": call["tool_name"], "content": content, "metadata": metadata}


def step_complete(step: dict[str, Any]) -> dict[str, Any]:
    return chunk({"event_type": "step_complete", "step_type": step["step_type"], "step_id": step["step_id"],
                  "step_details": step})


class TurnEvents:
    """Feeds on one run's Responses events; yields turn chunks and collects the steps and the output message."""

    def __init__(self, turn_id: str, input_shields: bool = False, output_shields: bool = False):
        self.turn_id = turn_id
        # a shield_call step per check, as Llama Stack shows them: violation null when the shields passed
        self._input_check_due = input_shields
        self._output_check_due = output_shields
        self.steps: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []  # client tool calls the turn waits for
        self.output_message: dict[str, Any] | None = None
        self._open: dict[str, Any] | None = None  # the inference step of the model call under way
        self._final_text: str | None = None
        self._refusal: str | None = None

    def _step(self, step_type: str, **fields: Any) -> dict[str, Any]:
        return {"step_id": str(uuid.uuid4()), "step_type": step_type, "turn_id": self.turn_id,
                "started_at": now_iso(), "completed_at": None, **fields}

    def _shield_call(self, violation: dict[str, Any] | None) -> list[dict[str, Any]]:
        step = self._step("shield_call", violation=violation)
        step["completed_at"] = now_iso()
        self.steps.append(step)
        return [chunk({"event_type": "step_start", "step_type": "shield_call", "step_id": step["step_id"],
                       "metadata": {}}), step_complete(step)]

    def _start_inference(self) -> list[dict[str, Any]]:
        if self._open is not None:
            return []
        out = []
        if self._input_check_due:  # the model runs: the input shields passed
            self._input_check_due = False
            out = self._shield_call(None)
        self._open = self._step("inference", text="")
        return out + [chunk({"event_type": "step_start", "step_type": "inference", "step_id": self._open["step_id"],
                       "metadata": {}})]

    def _finish_inference(self, content: str, stop_reason: str, calls: list[dict]) -> list[dict[str, Any]]:
        out = self._start_inference()
        step = self._open
        self._open = None
        step.pop("text")
        step["model_response"] = {"role": "assistant", "content": content, "stop_reason": stop_reason,
                                  "tool_calls": calls}
        step["completed_at"] = now_iso()
        self.steps.append(step)
        return out + [step_complete(step)]

    def progress(self, step_type: str, step_id: str, delta: dict[str, Any]) -> dict[str, Any]:
        return chunk({"event_type": "step_progress", "step_type": step_type, "step_id": step_id, "delta": delta})

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event["type"]
        if kind == "response.output_text.delta":
            out = self._start_inference()
            self._open["text"] += event["delta"]
            return out + [self.progress("inference", self._open["step_id"], {"type": "text", "text": event["delta"]})]
        if kind == "response.output_item.done":
            item = event["item"]
            if item["type"] == "message":
                parts = item.get("content") or []
                refusals = [p["refusal"] for p in parts if p.get("type") == "refusal"]
                if refusals:
                    return self._violation(refusals[0])
                self._final_text = "".join(p.get("text", "") for p in parts if p.get("type") == "output_text")
                return []
            if item["type"] in TOOL_ITEMS or item["type"] in ("function_call", "mcp_call"):
                return self._tool(item)
            return []
        if kind == "response.failed":
            error = event["response"].get("error") or {}
            raise APIError(f"the turn failed: {error.get('message', 'unknown error')}", code=error.get("code"))
        if kind in ("response.completed", "response.incomplete", "response.cancelled"):
            reason = (event["response"].get("incomplete_details") or {}).get("reason")
            return self._end("out_of_tokens" if reason == "max_output_tokens" else "end_of_turn")
        return []

    def _tool(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        call = tool_call(item)
        out = self._start_inference()
        out.append(self.progress("inference", self._open["step_id"],
                                 {"type": "tool_call", "parse_status": "succeeded", "tool_call": call}))
        out += self._finish_inference("", "end_of_message", [call])
        if item["type"] == "function_call":  # run by the client, which resumes the turn with its output
            self.pending.append(call)
            return out
        step = self._step("tool_execution", tool_calls=[call], tool_responses=[tool_response(item, call)])
        out.append(chunk({"event_type": "step_start", "step_type": "tool_execution", "step_id": step["step_id"],
                          "metadata": {}}))
        out.append(self.progress("tool_execution", step["step_id"],
                                 {"type": "tool_call", "parse_status": "in_progress", "tool_call": call}))
        step["completed_at"] = now_iso()
        self.steps.append(step)
        return out + [step_complete(step)]

    def _violation(self, message: str) -> list[dict[str, Any]]:
        """A guardrail refusal (input or output shield) is a shield_call step with its violation."""
        self._refusal = message
        self._input_check_due = self._output_check_due = False
        return self._shield_call({"violation_level": "error", "user_message": message, "metadata": {}})

    def _end(self, stop_reason: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        message = {"role": "assistant", "content": "", "stop_reason": stop_reason, "tool_calls": []}
        if self.pending:
            message = {**message, "stop_reason": "end_of_message", "tool_calls": list(self.pending)}
        elif self._refusal is not None:
            message["content"] = self._refusal
        elif self._final_text is not None or self._open is not None:
            text = self._final_text if self._final_text is not None else self._open["text"]
            out = self._finish_inference(text, stop_reason, [])
            message["content"] = text
        if self._output_check_due and not self.pending:  # the answer was released: the output shields passed
            out += self._shield_call(None)
        self.output_message = message
        return out
