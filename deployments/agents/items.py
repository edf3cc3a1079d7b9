"""Responses items: normalising input items, building output items, and turning items into chat messages."""

from __future__ import annotations

import json
from typing import Any

from serve.errors import InvalidRequestError
from serve.ids import new_id
from serve.protocol.content import content_text


def _text_of(content: Any) -> str:
    return content_text(content, param="input")


def normalize_input(inp: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input as stored items, each with an id: messages, function calls and their outputs, earlier outputs."""
    if isinstance(inp, str):
        return [{"type": "message", "id": new_id("msg"), "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": inp}]}]
    items = []
    for i, raw in enumerate(inp):
        if not isinstance(raw, dict):
            raise InvalidRequestError("input items must be objects", param=f"input.{i}")
        kind = raw.get("type", "message")
        if kind == "message":
            role = raw.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidRequestError(f"unknown message role {role!r}", param=f"input.{i}.role")
            content = raw.get("content")
            part = "output_text" if role == "assistant" else "input_text"
            if isinstance(content, str):
                content = [{"type": part, "text": content}]
            _text_of(content)  # validates the parts
            items.append({"type": "message", "id": raw.get("id") or new_id("msg"), "role": role,
                          "status": "completed", "content": content})
        elif kind == "function_call_output":
            if not raw.get("call_id"):
                raise InvalidRequestError("function_call_output needs call_id", param=f"input.{i}.call_id")
            output = raw.get("output")
            items.append({"type": kind, "id": raw.get("id") or new_id("fco"), "call_id": raw["call_id"],
                          "output": output if isinstance(output, str) else json.dumps(output), "status": "completed"})
        elif kind == "mcp_approval_response":
            if not raw.get("approval_request_id") or not isinstance(raw.get("approve"), bool):
                raise InvalidRequestError("mcp_approval_response needs approval_request_id and approve (a boolean)",
                                          param=f"input.{i}")
            items.append({"type": kind, "id": raw.get("id") or new_id("mcpa"),
                          "approval_request_id": raw["approval_request_id"], "approve": raw["approve"],
                          "reason": raw.get("reason")})
        elif kind == "compaction":
            if not isinstance(raw.get("encrypted_content"), str) or not raw["encrypted_content"].strip():
                raise InvalidRequestError("a compaction item needs its encrypted_content (the summary /responses/"
                                          "compact returned)", param=f"input.{i}.encrypted_content")
            items.append(compaction_item(raw["encrypted_content"], raw.get("id")))
        elif kind in ("function_call", "file_search_call", "web_search_call", "mcp_call", "mcp_list_tools",
                      "mcp_approval_request"):  # earlier output items fed back
            items.append({**raw, "id": raw.get("id") or new_id("fc")})
        else:
            raise InvalidRequestError(f"input item type {kind!r} is not supported", param=f"input.{i}.type")
    return items


def to_chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items -> OpenAI chat messages (function calls become assistant tool_calls, outputs become tool messages).
    Tool listings, approval requests/answers and web searches carry nothing the model needs to see again: the
    answer that used them is in the following message."""
    msgs: list[dict[str, Any]] = []
    for it in items:
        kind = it.get("type", "message")
        if kind == "message":
            role = "system" if it["role"] == "developer" else it["role"]
            msgs.append({"role": role, "content": _text_of(it.get("content"))})
        elif kind in ("function_call", "file_search_call", "mcp_call"):
            name = it.get("name", "file_search")
            args = it.get("arguments") or json.dumps({"query": " ".join(it.get("queries") or [])})
            call = {"id": it.get("call_id") or it["id"], "type": "function", "function": {"name": name,
                                                                                          "arguments": args}}
            if msgs and msgs[-1]["role"] == "assistant" and msgs[-1].get("tool_calls") and not msgs[-1]["content"]:
                msgs[-1]["tool_calls"].append(call)
            else:
                msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
            if kind == "file_search_call":
                msgs.append({"role": "tool", "tool_call_id": call["id"],
                             "content": search_results_text(it.get("results") or [])})
            elif kind == "mcp_call":
                msgs.append({"role": "tool", "tool_call_id": call["id"],
                             "content": it.get("output") or str(it.get("error") or "")})
        elif kind == "function_call_output":
            msgs.append({"role": "tool", "tool_call_id": it["call_id"], "content": it.get("output") or ""})
        elif kind == "compaction":
            msgs.append({"role": "system", "content": SUMMARY_HEADER + it["encrypted_content"]})
    return msgs


SUMMARY_HEADER = "Summary of the conversation so far:\n"


def compaction_item(summary: str, item_id: str | None = None) -> dict[str, Any]:
    """A compaction item: the model's summary of every item before it, which it stands for from then on. OpenAI
    names its opaque content `encrypted_content`; ours is the summary in plain text."""
    return {"type": "compaction", "id": item_id or new_id("cmp"), "encrypted_content": summary,
            "created_by": "stackserve"}


def visible_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the model reads of `items`: from the latest compaction item on (its summary stands for the rest)."""
    last = max((i for i, it in enumerate(items) if it.get("type") == "compaction"), default=0)
    return items[last:]


def search_results_text(results: list[dict[str, Any]]) -> str:
    if not results:
        return "file_search found nothing relevant."
    lines = [f"file_search found {len(results)} passages:"]
    for i, r in enumerate(results, 1):
        lines.append(f"[{i}] ({r.get('filename')}) {r.get('text', '')}")
    return "\n".join(lines)


def message_item(text: str, annotations: list[dict] | None = None, item_id: str | None = None,
                 logprobs: list[dict] | None = None) -> dict[str, Any]:
    return {"type": "message", "id": item_id or new_id("msg"), "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": annotations or [],
                         "logprobs": logprobs or []}]}


def refusal_item(text: str) -> dict[str, Any]:
    return {"type": "message", "id": new_id("msg"), "role": "assistant", "status": "completed",
            "content": [{"type": "refusal", "refusal": text}]}


def output_text(items: list[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for it in items if it.get("type") == "message"
                   for p in it.get("content", []) if p.get("type") == "output_text")
