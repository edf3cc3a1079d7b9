"""The one SSE writer: `data: {json}\\n\\n` events, `data: [DONE]` at the end, an error event if a stream fails."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from serve.errors import to_api_error


def sse_event(data: Any) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def sse_events(item: Any) -> str:
    """One event, or a run of events for a list (LLM streams arrive as lists of chunks)."""
    return "".join(sse_event(x) for x in item) if isinstance(item, list) else sse_event(item)


async def sse_stream(first: Any, rest: AsyncIterator[Any], done_marker: bool = True) -> AsyncIterator[str]:
    """Write `first` then every item of `rest`; a failure mid-stream becomes an OpenAI error event."""
    try:
        yield sse_events(first)
        async for item in rest:
            yield sse_events(item)
    except Exception as e:  # headers are sent: the error travels as an event the SDKs raise on
        yield sse_event(to_api_error(e).envelope())
        return
    finally:
        cancel = getattr(rest, "cancel", None)
        if cancel is not None:
            cancel()  # client gone or stream done: stop the replica's generator (frees engine capacity)
    if done_marker:
        yield "data: [DONE]\n\n"


async def sse_response(stream: Any, done_marker: bool = True) -> Any:
    """A StreamingResponse over a streaming handle call; errors before its first item raise (a plain HTTP error)."""
    from fastapi.responses import StreamingResponse

    try:
        first = await stream.__anext__()
    except BaseException:
        stream.cancel()
        raise
    return StreamingResponse(sse_stream(first, stream, done_marker), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
