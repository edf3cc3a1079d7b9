"""Llama Stack 0.2 telemetry routes (under /v1), read from the span store this ingress process writes to."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from serve.errors import NotFoundError
from serve.protocol.openapi_bodies import NULL_BODY, AsWrittenRoute
from serve.protocol.telemetry import (
    LogEventRequest,
    QuerySpansRequest,
    QuerySpansResponse,
    QueryTracesRequest,
    QueryTracesResponse,
    Span,
    SpanTreeRequest,
    SpanTreeResponse,
    Trace,
)
from serve.telemetry.tracing import span_store

router = APIRouter(route_class=AsWrittenRoute, tags=["telemetry"])


def _store():
    store = span_store()
    if store is None:
        raise NotFoundError("the span store is not enabled: set telemetry.tracing (and telemetry.span_store) in "
                            "the stack's config", code="not_enabled")
    return store


def _filters(conditions) -> list[dict[str, Any]]:
    return [c.model_dump() for c in conditions or []]


@router.post("/telemetry/traces", response_model=QueryTracesResponse)
async def query_traces(body: QueryTracesRequest) -> dict[str, Any]:
    data = await asyncio.to_thread(_store().query_traces, _filters(body.attribute_filters), body.limit,
                                   body.offset, body.order_by)
    return {"data": data}


@router.get("/telemetry/traces/{trace_id}", response_model=Trace)
async def get_trace(trace_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(_store().get_trace, trace_id)


@router.get("/telemetry/traces/{trace_id}/spans/{span_id}", response_model=Span)
async def get_span(trace_id: str, span_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(_store().get_span, trace_id, span_id)


@router.post("/telemetry/spans", response_model=QuerySpansResponse)
async def query_spans(body: QuerySpansRequest) -> dict[str, Any]:
    data = await asyncio.to_thread(_store().query_spans, _filters(body.attribute_filters),
                                   body.attributes_to_return, body.max_depth)
    return {"data": data}


@router.post("/telemetry/spans/{span_id}/tree", response_model=SpanTreeResponse)
async def get_span_tree(span_id: str, body: SpanTreeRequest | None = None) -> dict[str, Any]:
    body = body or SpanTreeRequest()
    return {"data": await asyncio.to_thread(_store().span_tree, span_id, body.attributes_to_return, body.max_depth)}


@router.post("/telemetry/events", responses=NULL_BODY)
async def log_event(body: LogEventRequest) -> None:
    await asyncio.to_thread(_store().log_event, body.event.model_dump(), body.ttl_seconds)
