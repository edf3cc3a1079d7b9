"""OpenAPI `responses` entries for bodies a `response_model` cannot describe: `null`, and SSE streams.

FastAPI merges these into the route's 200 response: a route that answers `null` says so (instead of "any"), and
a route that streams with `stream: true` names its event model under `text/event-stream`.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import TypeAdapter

# The 200 of a route whose handler returns None (deletes, inserts): the body is JSON `null`.
NULL_BODY: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done: the body is `null`", "content": {"application/json": {"schema": {"type": "null"}}}},
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with every `#/$defs/X` reference replaced by X itself (the models here are not recursive)."""
    if isinstance(node, list):
        return [_inline(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline(defs[ref.removeprefix("#/$defs/")], defs)
    # a discriminator's mapping points into $defs, which the inlined schema no longer has; oneOf still decides
    return {k: _inline(v, defs) for k, v in node.items() if k not in ("$defs", "discriminator")}


def event_stream_schema(event_type: Any) -> dict[str, Any]:
    """The JSON schema of one SSE event's `data`, self-contained (no references into components)."""
    schema = TypeAdapter(event_type).json_schema(mode="serialization")
    return _inline(schema, schema.get("$defs", {}))


def streaming_responses(event_type: Any) -> dict[int | str, dict[str, Any]]:
    """The 200 of a route that answers JSON, or with `stream: true` SSE events each carrying one `event_type`."""
    return {200: {"description": "JSON, or with `stream: true` a stream of server-sent events (`data: {event}`)",
                  "content": {"text/event-stream": {"schema": event_stream_schema(event_type)}}}}


class AsWrittenRoute(APIRoute):
    """A route whose response model validates the producer's body but adds no field it left out
    (`response_model_exclude_unset`): the model's defaults document the type, they do not change the body."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["response_model_exclude_unset"] = True
        super().__init__(*args, **kwargs)
