"""Spans and metrics for model calls, with OpenTelemetry's GenAI semantic-convention attributes.

`InferenceTelemetry.call(...)` wraps one request at an LLM deployment: a span `chat <model>` (or
`text_completion <model>`) and the request-level metrics. Inside it the OpenAI layer wraps each engine stream with
`observe_generation`, which times the first token and the gaps between outputs (TTFT, inter-token latency) and
records `prefill` and `decode` child spans. Timing attribute names are vLLM's (`gen_ai.latency.*`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from contextvars import ContextVar
from typing import Any

from opentelemetry import context, trace

from serve.telemetry import tracing
from serve.telemetry.metrics import metrics, watch_engine

_current: ContextVar[_Call | None] = ContextVar("stackserve_inference_call", default=None)


class _NoCall:
    """What `call()` gives when tracing and metrics are both off: every hook returns its input."""

    def __enter__(self) -> _NoCall:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def finish(self, response: Any) -> Any:
        return response

    def chunk(self, chunk: Any) -> Any:
        return chunk

    def tokens(self, n: int) -> None:
        return None


_NO_CALL = _NoCall()


class InferenceTelemetry:
    """One per LLM deployment; also starts sampling the engine's gauges (running, waiting, KV-cache use)."""

    def __init__(self, model_id: str, system: str, engine: Any = None):
        self.model_id = model_id
        self.system = system
        if engine is not None:
            watch_engine(engine, model_id)

    def call(self, operation: str, req: Any) -> _Call | _NoCall:
        if not tracing.enabled() and metrics() is None:
            return _NO_CALL
        return _Call(self, operation, req)


class _Call:
    def __init__(self, owner: InferenceTelemetry, operation: str, req: Any):
        self.owner, self.req = owner, req
        self.operation = operation
        self.n = getattr(req, "n", 1) or 1
        self.usage: dict[str, int] | None = None
        self.finish_reasons: dict[int, str] = {}
        self.prompt_tokens: dict[int, int] = {}  # per choice index, from the engine
        self.output_tokens = 0
        self.first_token_ns: int | None = None
        self.last_token_ns: int | None = None

    def __enter__(self) -> _Call:
        self.t0 = time.perf_counter()
        self.start_ns = time.time_ns()
        max_tokens = getattr(self.req, "max_completion_tokens", None) or getattr(self.req, "max_tokens", None)
        attrs = {"gen_ai.operation.name": self.operation, "gen_ai.system": self.owner.system,
                 "gen_ai.request.model": self.owner.model_id, "stackserve.stream": bool(self.req.stream)}
        for key, value in (("gen_ai.request.max_tokens", max_tokens),
                           ("gen_ai.request.temperature", self.req.temperature),
                           ("gen_ai.request.top_p", self.req.top_p), ("gen_ai.request.seed", self.req.seed),
                           ("gen_ai.request.choice.count", self.n if self.n != 1 else None)):
            if value is not None:
                attrs[key] = value
        self.span = tracing.start_span(f"{self.operation} {self.owner.model_id}", attributes=attrs)
        self.token = context.attach(trace.set_span_in_context(self.span)) if self.span.is_recording() else None
        self.call_token = _current.set(self)
        return self

    def finish(self, response: dict[str, Any]) -> dict[str, Any]:
        """A whole (non-streamed) response: its usage and finish reasons are the ones the client sees."""
        self.usage = response.get("usage") or self.usage
        for c in response.get("choices", []):
            if c.get("finish_reason"):
                self.finish_reasons[c["index"]] = c["finish_reason"]
        return response

    def chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        for c in chunk.get("choices", ()):
            if c.get("finish_reason"):
                self.finish_reasons[c["index"]] = c["finish_reason"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        return chunk

    def input_tokens(self) -> int:
        if self.usage:
            return self.usage["prompt_tokens"]
        return sum(n for i, n in self.prompt_tokens.items() if i % self.n == 0)  # n choices share a prompt

    def __exit__(self, exc_type, exc, tb) -> None:
        _current.reset(self.call_token)
        if self.token is not None:
            context.detach(self.token)
        seconds = time.perf_counter() - self.t0
        reasons = [self.finish_reasons[i] for i in sorted(self.finish_reasons)]
        if self.span.is_recording():
            attrs: dict[str, Any] = {"gen_ai.usage.input_tokens": self.input_tokens(),
                                     "gen_ai.usage.output_tokens": self.output_tokens,
                                     "gen_ai.response.finish_reasons": reasons, "gen_ai.latency.e2e": seconds}
            if self.first_token_ns is not None:
                attrs["gen_ai.latency.time_to_first_token"] = (self.first_token_ns - self.start_ns) / 1e9
                attrs["gen_ai.latency.time_in_model_decode"] = (self.last_token_ns - self.first_token_ns) / 1e9
            self.span.set_attributes(attrs)
            gone = isinstance(exc, (GeneratorExit, asyncio.CancelledError))  # closed, or its task cancelled
            if exc is not None and not gone:
                tracing.set_error(self.span, exc)
            elif gone:
                self.span.set_attribute("stackserve.aborted", True)  # the client went away mid-stream
        self.span.end()
        m = metrics()
        if m is not None and exc is None:
            tags = m.tags(model_name=self.owner.model_id)
            m.e2e.observe(seconds, tags)
            m.prompt_tokens.inc(self.input_tokens(), tags)
            if self.output_tokens:
                m.generation_tokens.inc(self.output_tokens, tags)
            for reason in reasons:
                m.success.inc(1, m.tags(model_name=self.owner.model_id, finished_reason=reason))

    async def track(self, stream: AsyncIterator[Any], index: int) -> AsyncIterator[Any]:
        """One engine stream (one choice): first-token and inter-token timing, prefill/decode spans."""
        m = metrics()
        tags = m.tags(model_name=self.owner.model_id) if m is not None else None
        submit_ns = time.time_ns()
        first = last = None
        count, reason = 0, None
        try:
            async with aclosing(stream) as outputs:
                async for out in outputs:
                    if out.tokens:
                        t = time.time_ns()
                        if first is None:
                            first = t
                            if m is not None:
                                m.ttft.observe((t - self.start_ns) / 1e9, tags)
                        elif m is not None:
                            m.itl.observe((t - last) / 1e9, tags)
                        last = t
                        count += len(out.tokens)
                    if out.num_prompt_tokens:
                        self.prompt_tokens[index] = out.num_prompt_tokens
                    reason = out.finish_reason or reason
                    yield out
        finally:
            self.output_tokens += count
            if reason is not None:
                self.finish_reasons.setdefault(index, reason)
            if first is not None:
                self._record_phases(index, submit_ns, first, last, count, m, tags)

    def _record_phases(self, index: int, submit_ns: int, first: int, last: int, count: int, m, tags) -> None:
        if self.first_token_ns is None or first < self.first_token_ns:
            self.first_token_ns = first
        self.last_token_ns = max(self.last_token_ns or last, last)
        if m is not None:
            m.decode.observe((last - first) / 1e9, tags)
        if not self.span.is_recording():
            return
        self.span.add_event("first_token", {"stackserve.choice": index}, timestamp=first)
        parent = trace.set_span_in_context(self.span)
        # the engine reports no scheduling time: "prefill" runs from submission (queue wait included) to token 1
        tracing.start_span("prefill", attributes={"stackserve.choice": index}, context=parent,
                           start_time=submit_ns).end(end_time=first)
        tracing.start_span("decode", attributes={"stackserve.choice": index, "stackserve.tokens": count},
                           context=parent, start_time=first).end(end_time=last)


def observe_generation(stream: AsyncIterator[Any], index: int = 0) -> AsyncIterator[Any]:
    """The OpenAI layer's hook around each engine stream: timed when a request is being observed."""
    call = _current.get()
    return stream if call is None else call.track(stream, index)


def embedding_call(model_id: str, texts: list[str]) -> EmbeddingCall | _NoCall:
    """Span `embeddings <model>` and the embedding-latency metric around one embeddings request."""
    if not tracing.enabled() and metrics() is None:
        return _NO_CALL
    return EmbeddingCall(model_id, texts)


class EmbeddingCall:
    def __init__(self, model_id: str, texts: list[str]):
        self.model_id, self.texts = model_id, texts

    def __enter__(self) -> EmbeddingCall:
        self.t0 = time.perf_counter()
        self.span = tracing.start_span(f"embeddings {self.model_id}", attributes={
            "gen_ai.operation.name": "embeddings", "gen_ai.request.model": self.model_id,
            "stackserve.inputs": len(self.texts)})
        return self

    def tokens(self, n: int) -> None:
        self.span.set_attribute("gen_ai.usage.input_tokens", n)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            tracing.set_error(self.span, exc)
        self.span.end()
        m = metrics()
        if m is not None and exc is None:
            m.embedding.observe(time.perf_counter() - self.t0, m.tags(model_name=self.model_id))
