"""Streaming with tools: decide per choice whether the text is a tool call before any of it is sent.

With tool_choice required/named every token is part of the call, so the whole text is buffered. With auto, text
streams as content unless its first non-space character can open a call (`{`, `[`, `<tool_call>`); then it is
buffered and, at the end, sent either as tool-call deltas or, if it does not parse as a call, as content.
With parallel tool calls off, a list of calls keeps only its first.
"""

from __future__ import annotations

from typing import Any

from deployments.inference.tool_calls import ToolSpec, parse_tool_calls

_CALL_OPENERS = ("{", "[", "<")


class ToolCallStream:
    def __init__(self, specs: list[ToolSpec], mode: str, parallel: bool = True):
        self.specs = specs
        self.parallel = parallel
        self.active = bool(specs) and mode != "none"
        self.buffering = mode in ("required", "named")
        self.decided = self.buffering or not self.active
        self.buffer = ""

    def feed(self, text: str) -> str:
        """Text to stream as content now ('' while undecided or buffering a call)."""
        if self.decided and not self.buffering:
            return text
        self.buffer += text
        if self.decided:
            return ""
        head = self.buffer.lstrip()
        if not head:
            return ""
        self.decided = True
        self.buffering = head.startswith(_CALL_OPENERS)
        if self.buffering:
            return ""
        out, self.buffer = self.buffer, ""
        return out

    def finish(self) -> tuple[list[dict[str, Any]], str | None]:
        """At the end: ([delta, ...] to send, finish_reason override)."""
        if not self.buffering:
            return [], None
        calls = parse_tool_calls(self.buffer, self.specs) if self.active else None
        if not calls:
            return ([{"content": self.buffer}] if self.buffer else []), None
        if not self.parallel:
            calls = calls[:1]
        deltas: list[dict[str, Any]] = []
        for k, c in enumerate(calls):
            deltas.append({"tool_calls": [{"index": k, "id": c["id"], "type": "function",
                                           "function": {"name": c["function"]["name"], "arguments": ""}}]})
            deltas.append({"tool_calls": [{"index": k, "function": {"arguments": c["function"]["arguments"]}}]})
        return deltas, "tool_calls"
