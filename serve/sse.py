"""The one SSE writer: `data: {json}\\n\\n` events, `data: [DONE]` at the end, an error event if a stream fails.

Anthropic's streams (shape "anthropic") name each event by its `type` (`event: message_start`, ...), end with no
marker, and report a failure as `event: error` in Anthropic's error shape.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from serve.errors import error_body, to_api_error


def sse_event(data: Any, event: str | None = None) -> str:
    name = f"event: {event}\n" if event else ""
    return f"{name}data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def sse_events(item: Any, named: bool = False) -> str:
    """One event, or a run of events for a list (LLM streams arrive as lists of chunks); `named`: each event is
    named by its data's `type`."""
    items = item if isinstance(item, list) else [item]
    return "".join(sse_event(x, x["type"] if named else None) for x in items)


async def sse_stream(first: Any, rest: AsyncIterator[Any], done_marker: bool = True,
                     shape: str = "openai") -> AsyncIterator[str]:
    """Write `first` then every item of `rest`; a failure mid-stream becomes an error event in `shape`."""
    named = shape == "anthropic"
    try:
        yield sse_events(first, named)
        async for item in rest:
            yield sse_events(item, named)
    except Exception as e:  # headers are sent: the error travels as an event the SDKs raise on
        yield sse_event(error_body(to_api_error(e), shape)[1], "error" if named else None)
        return
    finally:
        cancel = getattr(rest, "cancel", None)
        if cancel is not None:
            cancel()  # client gone or stream done: stop the replica's generator (frees engine capacity)
    if done_marker:
        yield "data: [DONE]\n\n"


async def sse_response(stream: Any, done_marker: bool = True, shape: str = "openai") -> Any:
    """A StreamingResponse over a streaming handle call; errors before its first item raise (a plain HTTP error).
    `shape` "anthropic": named events, no done marker, Anthropic's error event."""
    from fastapi.responses import StreamingResponse

    try:
        first = await stream.__anext__()
    except BaseException:
        stream.cancel()
        raise
    done_marker = done_marker and shape != "anthropic"
    return StreamingResponse(sse_stream(first, stream, done_marker, shape), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
