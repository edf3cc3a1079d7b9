"""W3C trace context (and baggage) across DeploymentHandle calls.

The caller's handles are wrapped in `TracedHandle`, which adds the current context to every `.remote(...)` call as
one keyword argument, `trace_context` (a `traceparent`/`tracestate`/`baggage` header dict: small, picklable, the
same format as HTTP). The callee's methods are wrapped to take it off again and run under that context, so spans
on both sides join one trace. `instrument.py` applies both wrappers to every deployment; no call site changes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_KWARG = "trace_context"
REQUEST_ID_KEY = "stackserve.request_id"  # baggage entry: the HTTP request id, for logs in every deployment

_propagator = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def inject(ctx: context.Context | None = None) -> dict[str, str] | None:
    """The (current) context as W3C headers, or None when there is neither a span to continue nor baggage."""
    if not trace.get_current_span(ctx).get_span_context().is_valid and not baggage.get_all(ctx):
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=ctx)
    return carrier or None


def extract(headers: Mapping[str, str]) -> context.Context:
    return _propagator.extract(headers)


def with_request_id(ctx: context.Context, request_id: str) -> context.Context:
    return baggage.set_baggage(REQUEST_ID_KEY, request_id, ctx)


def request_id_from_context() -> str | None:
    value = baggage.get_baggage(REQUEST_ID_KEY)
    return str(value) if value is not None else None


class TracedHandle:
    """A DeploymentHandle that passes the caller's trace context along with every call."""

    __slots__ = ("_handle",)

    def __init__(self, handle: Any):
        self._handle = handle

    def options(self, *args: Any, **kwargs: Any) -> TracedHandle:
        return TracedHandle(self._handle.options(*args, **kwargs))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        carrier = inject()
        if carrier is not None:
            kwargs[TRACE_KWARG] = carrier
        return self._handle.remote(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # `handle.method` is itself a handle: keep it traced
        value = getattr(self._handle, name)
        return TracedHandle(value) if _is_handle(value) else value

    def __reduce__(self):
        return TracedHandle, (self._handle,)


def _is_handle(value: Any) -> bool:
    from ray.serve.handle import DeploymentHandle

    from serve.local_handle import IngressHandle

    return isinstance(value, DeploymentHandle | IngressHandle)


def traced_handles(value: Any) -> Any:
    """Wrap a handle, or the handles in a dict or list (as the graph builder passes them); anything else as is."""
    if isinstance(value, dict):
        return {k: traced_handles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [traced_handles(v) for v in value]
    return TracedHandle(value) if _is_handle(value) else value


def accepting_trace_context(fn):
    """Wrap a bound async method (or async generator) to run under the caller's `trace_context`, if sent."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def stream(*args, **kwargs):
            carrier = kwargs.pop(TRACE_KWARG, None)
            token = context.attach(extract(carrier)) if carrier else None
            try:
                async with aclosing(fn(*args, **kwargs)) as inner:  # closing us closes (aborts) the inner stream
                    async for item in inner:
                        yield item
            finally:
                if token is not None:
                    context.detach(token)

        return stream

    @functools.wraps(fn)
    async def call(*args, **kwargs):
        carrier = kwargs.pop(TRACE_KWARG, None)
        if not carrier:
            return await fn(*args, **kwargs)
        token = context.attach(extract(carrier))
        try:
            return await fn(*args, **kwargs)
        finally:
            context.detach(token)

    return call
