"""Tracing in one process: a TracerProvider built from the stack's TelemetryConfig, and the span helpers hooks use.

Each replica process sets itself up once (see `instrument.py`); until then, and whenever `telemetry.tracing` is off,
`enabled()` is False and every hook returns before touching OpenTelemetry. The provider is ours, not the global
one, so Ray Serve's own tracing (or a library's) is left alone.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from serve.config import TelemetryConfig
from serve.telemetry.metrics import metrics

logger = logging.getLogger("stackserve.telemetry")

_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
_store = None  # the SpanStore this process writes to (and the ingress reads from)


def setup_tracing(cfg: TelemetryConfig, store_url: str | None, resource: dict[str, Any]) -> None:
    """Build this process's provider once: sampler, resource, and a batch processor per configured exporter."""
    global _provider, _tracer, _store
    if _provider is not None or not cfg.tracing:
        return
    from serve.telemetry.exporters import OTLPHttpExporter, SpanStoreExporter
    from serve.telemetry.store import SpanStore

    provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name, **resource}),
                              sampler=ParentBased(TraceIdRatioBased(cfg.sampling_ratio)))
    exporters = []
    if cfg.span_store.enabled and store_url:
        _store = SpanStore(store_url, cfg.span_store.retention_hours, cfg.span_store.max_spans)
        exporters.append(SpanStoreExporter(_store))
    if cfg.otlp is not None:
        exporters.append(OTLPHttpExporter(cfg.otlp.endpoint, cfg.otlp.headers, cfg.otlp.timeout_s))
    if cfg.console:
        exporters.append(ConsoleSpanExporter())
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=cfg.export_interval_ms))
    _provider, _tracer = provider, provider.get_tracer("stackserve")
    logger.info("tracing on: %s", ", ".join(type(e).__name__ for e in exporters) or "no exporters")


def shutdown_tracing() -> None:
    """Flush and drop this process's provider (tests; the provider also flushes at exit)."""
    global _provider, _tracer, _store
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = _store = None


def enabled() -> bool:
    return _tracer is not None


def span_store():
    return _store


def force_flush() -> None:
    if _provider is not None:
        _provider.force_flush()


def start_span(name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: dict[str, Any] | None = None,
               context=None, start_time: int | None = None) -> Span:
    """A span under the current (or given) context; the no-op span when tracing is off."""
    if _tracer is None:
        return trace.INVALID_SPAN
    return _tracer.start_span(name, context=context, kind=kind, attributes=attributes, start_time=start_time)


@contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: dict[str, Any] | None = None) -> Iterator[Span]:
    """Open a span, make it current for the block, record an escaping exception as an error."""
    if _tracer is None:
        yield trace.INVALID_SPAN
        return
    with _tracer.start_as_current_span(name, kind=kind, attributes=attributes, record_exception=True,
                                       set_status_on_exception=True) as s:
        yield s


def set_error(s: Span, exc: BaseException) -> None:
    s.record_exception(exc)
    s.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def traced(name: str, record: tuple[str, ...] = (), attributes: dict[str, Any] | None = None,
           observe: Callable[[Span, Any], None] | None = None,
           latency: Callable[[float, dict[str, Any]], None] | None = None):
    """Decorate an async function with a span `name` carrying `attributes`: `record` names arguments that become
    `stackserve.<argument>` attributes, `observe(span, result)` adds what the result tells, and
    `latency(seconds, recorded arguments)` feeds a metric. With tracing and metrics off the call goes straight
    through."""

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        async def call(*args, **kwargs):
            # (module functions, not module globals: Ray pickles this closure by value with the deployment class)
            if not enabled() and (latency is None or metrics() is None):
                return await fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs).arguments
            picked = {k: bound[k] for k in record if bound.get(k) is not None}
            t0 = time.perf_counter()
            attrs = {**(attributes or {}), **{f"stackserve.{k}": _attr(v) for k, v in picked.items()}}
            with span(name, attributes=attrs) as s:
                result = await fn(*args, **kwargs)
                if observe is not None and s.is_recording():
                    observe(s, result)
            if latency is not None:
                latency(time.perf_counter() - t0, picked)
            return result

        return call

    return wrap


def _attr(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    return str(value)
