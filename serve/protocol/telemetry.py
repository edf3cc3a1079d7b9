"""Llama Stack 0.2 telemetry API request schemas: trace and span queries, and logged events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve.protocol.llama_common import DateTime

DEFAULT_TTL_SECONDS = 7 * 86400
# The span store keeps times as int64 nanoseconds since the epoch (up to 2262): event times and their expiry must fit.
EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT = datetime(2200, 1, 1, tzinfo=UTC)
MAX_TTL_SECONDS = 50 * 365 * 86400


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class QueryCondition(_Lenient):
    key: str = Field(min_length=1)
    op: Literal["eq", "ne", "gt", "lt"]
    value: Any = None


class QueryTracesRequest(_Lenient):
    attribute_filters: list[QueryCondition] | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    order_by: list[str] | None = None  # trace fields, "-" for descending; default newest first


class QuerySpansRequest(_Lenient):
    attribute_filters: list[QueryCondition]
    attributes_to_return: list[str]
    max_depth: int | None = Field(default=None, ge=1)


class SpanTreeRequest(_Lenient):
    attributes_to_return: list[str] | None = None
    max_depth: int | None = Field(default=None, ge=1)


class _EventCommon(_Lenient):
    trace_id: str = Field(min_length=1, max_length=64)
    span_id: str = Field(min_length=1, max_length=64)
    timestamp: datetime
    attributes: dict[str, Any] | None = None

    @field_validator("timestamp")
    @classmethod
    def _storable(cls, value: datetime) -> datetime:
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if not EARLIEST_EVENT <= aware < LATEST_EVENT:
            raise ValueError(f"must fall between {EARLIEST_EVENT.year} and {LATEST_EVENT.year}")
        return value


class UnstructuredLogEvent(_EventCommon):
    type: Literal["unstructured_log"]
    message: str
    severity: Literal["verbose", "debug", "info", "warn", "error", "critical"]


class MetricEvent(_EventCommon):
    type: Literal["metric"]
    metric: str
    value: float
    unit: str


class SpanStartPayload(_Lenient):
    type: Literal["span_start"]
    name: str = Field(min_length=1, max_length=512)
    parent_span_id: str | None = None


class SpanEndPayload(_Lenient):
    type: Literal["span_end"]
    status: Literal["ok", "error"]


class StructuredLogEvent(_EventCommon):
    type: Literal["structured_log"]
    payload: Annotated[SpanStartPayload | SpanEndPayload, Field(discriminator="type")]


class LogEventRequest(_Lenient):
    event: Annotated[UnstructuredLogEvent | MetricEvent | StructuredLogEvent, Field(discriminator="type")]
    ttl_seconds: int = Field(default=DEFAULT_TTL_SECONDS, ge=1, le=MAX_TTL_SECONDS)


# ---- responses (llama-stack-client 0.2.12's Trace, Span, SpanWithStatus) --------------------------------------

class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Trace(_Out):
    trace_id: str
    root_span_id: str
    start_time: DateTime
    end_time: DateTime | None = None


class QueryTracesResponse(_Out):
    data: list[Trace]


class Span(_Out):
    span_id: str
    trace_id: str
    parent_span_id: str | None = None
    name: str
    start_time: DateTime
    end_time: DateTime | None = None
    attributes: dict[str, Any] | None = None


class SpanWithStatus(Span):
    status: Literal["ok", "error"] | None = None


class QuerySpansResponse(_Out):
    data: list[Span]


class SpanTreeResponse(_Out):
    data: dict[str, SpanWithStatus]
