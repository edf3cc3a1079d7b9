"""The model's context as a Responses run fills it: what may be dropped, token counts, truncation and compaction.

The chat a run sends is [instructions] + earlier items + the newest user input (+ this run's tool rounds). Only the
earlier items are ever dropped (`truncation: "auto"`) or summarised (compaction), oldest first, and an assistant's
tool calls go together with their results. Token counts come from the LLM deployment (`count_tokens`: the chat
template rendered as the model reads it), so what is counted is what is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from deployments.agents.items import to_chat_messages, visible_items
from serve.protocol.openai_chat import ChatCompletionRequest

logger = logging.getLogger("stackserve.agents")

SUMMARY_MAX_TOKENS = 256
SUMMARY_INSTRUCTIONS = (
    "You compact conversations. Summarise the conversation below so that it can be continued without it: keep "
    "every fact, name, number, decision and open request from it. Write only the summary.")


def split_context(history: list[dict], input_items: list[dict]) -> tuple[list[dict], list[dict]]:
    """(earlier items, newest user input): what the model reads of the chain, cut before the last user message of
    this request's input (before the whole input when it has none). Only the earlier items may be dropped."""
    items = visible_items(history + input_items)
    own = min(len(input_items), len(items))  # input items the model reads (a compaction item in them hides some)
    start = len(items) - own
    users = [i for i, it in enumerate(items[start:]) if it.get("type", "message") == "message"
             and it.get("role") == "user"]
    cut = start + (users[-1] if users else 0)
    return items[:cut], items[cut:]


def units(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Chat messages grouped as they can be dropped: an assistant's tool calls with the tool results after them."""
    out: list[list[dict[str, Any]]] = []
    for m in messages:
        if m["role"] == "tool" and out and (out[-1][0].get("tool_calls") or out[-1][0]["role"] == "tool"):
            out[-1].append(m)
        else:
            out.append([m])
    return out


async def fewest_to_drop(n: int, fits: Callable[[int], Awaitable[bool]]) -> int:
    """The smallest k in 0..n with `fits(k)` (dropping more never makes a prompt longer): a binary search, so a
    long history costs log2(n) counts. n when nothing fits (the model call then says why)."""
    if await fits(0):
        return 0
    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi) // 2
        if await fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def transcript(messages: list[dict[str, Any]]) -> list[str]:
    """Chat messages as lines of a transcript for the summariser (tool calls and results named as such)."""
    lines = []
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call["function"]
            lines.append(f"assistant called {fn['name']}({fn.get('arguments') or ''})")
        if m["role"] == "tool":
            lines.append(f"tool result: {m.get('content') or ''}")
        elif m.get("content"):
            lines.append(f"{m['role']}: {m['content']}")
    return lines


class ContextWindow:
    """Counts and fits one model's context for a run."""

    def __init__(self, llm: Any, model: str):
        self.llm = llm
        self.model = model
        self._length: int | None = None

    async def length(self) -> int:
        if self._length is None:
            self._length = int((await self.llm.model_info.remote())["context_length"])
        return self._length

    async def count(self, req: ChatCompletionRequest) -> int:
        return await self.llm.count_tokens.remote(req)

    async def reserve(self, budget: int | None) -> int:
        """Room kept for the answer: its budget, or a quarter of the context when it has none."""
        return budget if budget is not None else await self.length() // 4

    async def truncate(self, messages: list[dict], span: tuple[int, int],
                       request: Callable[[list[dict]], ChatCompletionRequest], budget: int | None) -> int:
        """Drop the fewest oldest units of messages[span] for the chat (as `request` makes it) to fit the context
        with room for `budget`; in place. Returns the new end of the span."""
        start, end = span
        groups = units(messages[start:end])
        room = await self.length() - await self.reserve(budget)

        def kept(k: int) -> list[dict]:
            return messages[:start] + [m for g in groups[k:] for m in g] + messages[end:]

        async def fits(k: int) -> bool:
            return await self.count(request(kept(k))) <= room

        k = await fewest_to_drop(len(groups), fits)
        if k:
            dropped = sum(len(g) for g in groups[:k])
            logger.info("truncation: dropped the %d oldest of %d earlier messages to fit %s's context", dropped,
                        end - start, self.model)
            messages[start:end] = [m for g in groups[k:] for m in g]
            end -= dropped
        return end

    async def summarize(self, items: list[dict]) -> tuple[str, dict[str, int]]:
        """The model's summary of `items` and the call's usage. A history longer than the context is summarised
        from its newest part that fits."""
        lines = transcript(to_chat_messages(items))
        room = await self.length() - SUMMARY_MAX_TOKENS

        def request(skip: int) -> ChatCompletionRequest:
            return ChatCompletionRequest(model=self.model, temperature=0, max_tokens=SUMMARY_MAX_TOKENS,
                                         messages=[{"role": "system", "content": SUMMARY_INSTRUCTIONS},
                                                   {"role": "user", "content": "\n".join(lines[skip:])}])

        async def fits(skip: int) -> bool:
            return await self.count(request(skip)) <= room

        skip = await fewest_to_drop(max(len(lines) - 1, 0), fits)
        answer = await self.llm.chat.remote(request(skip))
        return (answer["choices"][0]["message"].get("content") or "").strip(), answer["usage"]
