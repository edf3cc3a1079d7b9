"""Span exporters: the built-in SQL span store, and OTLP over HTTP (protobuf) to any OpenTelemetry collector.

The OTLP exporter encodes with `opentelemetry-proto` (which Ray Serve already depends on) rather than the
`opentelemetry-exporter-otlp-proto-http` package, whose install would move the opentelemetry packages Ray pins.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from serve.telemetry.store import SpanStore

logger = logging.getLogger("stackserve.telemetry")

DEPLOYMENT_ATTRIBUTE = "stackserve.deployment"


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def span_row(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as a `telemetry_spans` row; the deployment that recorded it joins its attributes."""
    ctx = span.get_span_context()
    attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()}
    if span.resource is not None and DEPLOYMENT_ATTRIBUTE in span.resource.attributes:
        attrs.setdefault(DEPLOYMENT_ATTRIBUTE, span.resource.attributes[DEPLOYMENT_ATTRIBUTE])
    status = {StatusCode.OK: "ok", StatusCode.ERROR: "error"}.get(span.status.status_code)
    return {
        "span_id": _hex(ctx.span_id, 16), "trace_id": _hex(ctx.trace_id, 32),
        "parent_span_id": _hex(span.parent.span_id, 16) if span.parent is not None else None,
        "name": span.name, "kind": span.kind.name.lower(), "start_ns": span.start_time, "end_ns": span.end_time,
        "status": status, "attributes": attrs,
        "events": [{"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes or {})}
                   for e in span.events],
    }


class SpanStoreExporter(SpanExporter):
    def __init__(self, store: SpanStore):
        self.store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self.store.write([span_row(s) for s in spans])
        except Exception:  # a full disk or a locked database must not break serving
            logger.exception("span store: could not write %d spans", len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


# ---- OTLP/HTTP ------------------------------------------------------------------------------------------------

def _any_value(value: Any):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue

    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def _key_values(attrs: Any) -> list:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=k, value=_any_value(v)) for k, v in (attrs or {}).items()]


def _proto_span(span: ReadableSpan):
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    ctx = span.get_span_context()
    return Span(
        trace_id=ctx.trace_id.to_bytes(16, "big"), span_id=ctx.span_id.to_bytes(8, "big"),
        parent_span_id=span.parent.span_id.to_bytes(8, "big") if span.parent is not None else b"",
        trace_state=ctx.trace_state.to_header() if ctx.trace_state else "",
        name=span.name, kind=_KINDS[span.kind], start_time_unix_nano=span.start_time or 0,
        end_time_unix_nano=span.end_time or 0, attributes=_key_values(span.attributes),
        events=[Span.Event(time_unix_nano=e.timestamp, name=e.name, attributes=_key_values(e.attributes))
                for e in span.events],
        status=Status(code=span.status.status_code.value, message=span.status.description or ""),
    )


_KINDS = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """An OTLP ExportTraceServiceRequest: spans grouped by resource, then by instrumentation scope."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    grouped: dict[Any, dict[Any, list]] = {}
    for s in spans:
        scope = s.instrumentation_scope
        grouped.setdefault(s.resource, {}).setdefault((scope.name, scope.version) if scope else ("", ""),
                                                      []).append(_proto_span(s))
    request = ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=Resource(attributes=_key_values(resource.attributes if resource else {})),
                      scope_spans=[ScopeSpans(scope=InstrumentationScope(name=name, version=version or ""),
                                              spans=items) for (name, version), items in scopes.items()])
        for resource, scopes in grouped.items()])
    return request.SerializeToString()


class OTLPHttpExporter(SpanExporter):
    """POST {endpoint}/v1/traces with `application/x-protobuf`; a few retries on 429/5xx and network errors."""

    RETRIES = 3

    def __init__(self, endpoint: str, headers: dict[str, str] | None = None, timeout_s: float = 10.0):
        base = endpoint.rstrip("/")
        self.url = base if base.endswith("/v1/traces") else f"{base}/v1/traces"
        self.headers = {"Content-Type": "application/x-protobuf", **(headers or {})}
        self.timeout_s = timeout_s
        self._stopped = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopped or not spans:
            return SpanExportResult.SUCCESS
        body = encode_spans(spans)
        for attempt in range(self.RETRIES):
            try:
                req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s):
                    return SpanExportResult.SUCCESS
            except urllib.error.HTTPError as e:
                if e.code not in (429, 502, 503, 504):
                    logger.warning("OTLP export to %s refused: HTTP %d", self.url, e.code)
                    return SpanExportResult.FAILURE
            except OSError as e:
                if attempt == self.RETRIES - 1:
                    logger.warning("OTLP export to %s failed: %s", self.url, e)
            if attempt < self.RETRIES - 1:
                time.sleep(0.2 * 2 ** attempt)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._stopped = True
