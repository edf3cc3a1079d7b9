"""POST /responses/compact: a history (input items and/or a stored chain) summarised by the model into one
compaction item, which later requests send in `input` instead of the history it stands for."""

from __future__ import annotations

import time
from typing import Any

from deployments.agents.context_window import ContextWindow
from deployments.agents.items import compaction_item, new_id, visible_items
from deployments.agents.response_events import usage_object
from serve.errors import APIError
from serve.protocol.openai_completions import cached_tokens


def _is_user_message(it: dict[str, Any]) -> bool:
    return it.get("type", "message") == "message" and it.get("role") == "user"


async def compact(llm: Any, model: str, items: list[dict[str, Any]], instructions: str | None) -> dict[str, Any]:
    """The compacted response: the user messages the model read, then the compaction item (OpenAI's shape)."""
    visible = visible_items(items)
    context = visible
    if instructions:
        context = [{"type": "message", "role": "system", "content": [{"type": "input_text", "text": instructions}]},
                   *visible]
    summary, usage = await ContextWindow(llm, model).summarize(context)
    if not summary:
        raise APIError(f"the model '{model}' wrote an empty summary; try compacting again", code="empty_summary")
    return {"id": new_id("resp"), "object": "response.compaction", "created_at": int(time.time()),
            "output": [it for it in visible if _is_user_message(it)] + [compaction_item(summary)],
            "usage": usage_object(usage["prompt_tokens"], usage["completion_tokens"], cached_tokens(usage))}
