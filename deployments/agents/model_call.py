"""One model call of the Responses loop: the chat request it sends and the fold of the chunks it streams back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from deployments.agents.hosted_tools import HostedTools
from serve.errors import InvalidRequestError
from serve.protocol.responses import CreateResponseRequest

CANCEL_POLL_S = 0.25  # how often a running generation looks for a cancel in the store


def response_format(req: CreateResponseRequest) -> dict | None:
    """The request's text.format as a chat response_format."""
    fmt = (req.text or {}).get("format") or {"type": "text"}
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {
            "name": fmt.get("name", "output"), "schema": fmt.get("schema"), "strict": fmt.get("strict", True)}}
    if fmt.get("type") in ("json_object", "text"):
        return {"type": fmt["type"]}
    raise InvalidRequestError(f"text.format type {fmt.get('type')!r} is not supported", param="text.format")


def tool_choice(req: CreateResponseRequest, hosted: HostedTools, iteration: int) -> Any:
    """The request's tool_choice as a chat tool_choice for the model call `iteration`."""
    choice = req.tool_choice
    if iteration > 0 and choice not in (None, "auto", "none"):
        return "none"  # a forced choice forces one round of calls; then the model answers from the results
    if not isinstance(choice, dict):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("type") == "allowed_tools":
        return choice.get("mode", "auto")
    forced = hosted.chat_tool_choice(choice)
    if forced is None:
        raise InvalidRequestError("tool_choice must be auto, none, required or one of the request's tools",
                                  param="tool_choice")
    return forced


@dataclass
class ModelOutput:
    """What one model call produced so far, folded from its streamed chat chunks."""

    msg_id: str  # the id its message item gets, if it answers in text
    buffered: bool  # output guardrails judge the whole text before it is shown
    text: str = ""
    deltas: list[dict[str, Any]] = field(default_factory=list)  # tool-call deltas
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # the text's tokens, when they were asked for
    finish: str | None = None
    shown: bool = False  # the message item was opened for the client

    def fold(self, chunk: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
        """Takes one chunk in; returns its text pieces, each with its tokens' logprobs (empty unless asked for)."""
        pieces = []
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            self.deltas += delta.get("tool_calls") or []
            self.finish = choice.get("finish_reason") or self.finish
            logprobs = (choice.get("logprobs") or {}).get("content") or []
            self.logprobs += logprobs
            if delta.get("content"):
                self.text += delta["content"]
                pieces.append((delta["content"], logprobs))
        return pieces

    def tool_calls(self) -> list[dict[str, Any]]:
        return merge_tool_calls(self.deltas)


def merge_tool_calls(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


async def chunks(stream: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[dict[str, Any]]:
    """The LLM deployment streams lists of chat chunks; one chunk at a time."""
    async for batch in stream:
        for chunk in batch:
            yield chunk


class CancelPoll:
    """Asks `is_cancelled` (a store read) at most every `every_s` while a generation streams."""

    def __init__(self, is_cancelled: Callable[[], Awaitable[Any]], every_s: float = CANCEL_POLL_S):
        self.is_cancelled = is_cancelled
        self.every_s = every_s
        self.checked = time.monotonic()

    async def cancelled(self) -> bool:
        if time.monotonic() - self.checked < self.every_s:
            return False
        self.checked = time.monotonic()
        return bool(await self.is_cancelled())
