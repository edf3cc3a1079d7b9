"""Telemetry without Ray: span store queries and retention, context propagation, OTLP export to a real HTTP
collector, the ingress middleware, inference timing, JSON logs."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from serve.config import TelemetryConfig, parse_config
from serve.errors import ConflictError, InvalidRequestError, NotFoundError
from serve.telemetry import tracing
from serve.telemetry.exporters import OTLPHttpExporter, SpanStoreExporter
from serve.telemetry.genai import InferenceTelemetry, observe_generation
from serve.telemetry.logs import setup_json_logs
from serve.telemetry.propagation import (
    TRACE_KWARG,
    TracedHandle,
    accepting_trace_context,
    request_id_from_context,
    with_request_id,
)
from serve.telemetry.store import SpanStore
from serve.telemetry.tables import spans


@pytest.fixture
def store(tmp_path) -> SpanStore:
    return SpanStore(f"sqlite:///{tmp_path / 'telemetry.db'}", retention_hours=1, max_spans=100)


@pytest.fixture
def traced(tmp_path):
    """This process's tracing, on: spans go to a span store in tmp_path."""
    tracing.shutdown_tracing()
    tracing.setup_tracing(TelemetryConfig(tracing=True, export_interval_ms=10), f"sqlite:///{tmp_path / 't.db'}",
                          {"stackserve.deployment": "Test"})
    yield tracing.span_store()
    tracing.shutdown_tracing()


def _tracer(store: SpanStore) -> trace.Tracer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SpanStoreExporter(store)))
    return provider.get_tracer("test")


def _hex(span) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _request_trace(tracer, model: str) -> tuple[str, str]:
    """root (server) -> agent -> [chat (model), search]"""
    with tracer.start_as_current_span("POST /v1/responses", attributes={"__root__": True}) as root:
        with tracer.start_as_current_span("invoke_agent"):
            with tracer.start_as_current_span("chat", attributes={"gen_ai.request.model": model,
                                                                  "gen_ai.usage.output_tokens": 7}):
                pass
            with tracer.start_as_current_span("vector_io.search", attributes={"stackserve.hits": 3}):
                pass
    return _hex(root)


def test_store_queries(store):
    tracer = _tracer(store)
    t1, root1 = _request_trace(tracer, "m1")
    t2, root2 = _request_trace(tracer, "m2")
    assert [t["trace_id"] for t in store.query_traces()] == [t2, t1]  # newest first
    assert [t["trace_id"] for t in store.query_traces(order_by=["start_time"])] == [t1, t2]
    assert [t["trace_id"] for t in store.query_traces(limit=1, offset=1)] == [t1]
    only = store.query_traces([{"key": "gen_ai.request.model", "op": "eq", "value": "m2"}])
    assert [(t["trace_id"], t["root_span_id"]) for t in only] == [(t2, root2)]
    assert store.query_traces([{"key": "stackserve.hits", "op": "gt", "value": 5}]) == []
    assert len(store.query_traces([{"key": "stackserve.hits", "op": "gt", "value": 2.5}])) == 2
    trace1 = store.get_trace(t1)
    assert trace1["root_span_id"] == root1 and trace1["start_time"] < trace1["end_time"]

    tree = store.span_tree(root1)
    names = {s["name"]: s for s in tree.values()}
    assert set(names) == {"POST /v1/responses", "invoke_agent", "chat", "vector_io.search"}
    assert names["chat"]["parent_span_id"] == names["invoke_agent"]["span_id"]
    assert names["invoke_agent"]["parent_span_id"] == root1
    assert {s["status"] for s in tree.values()} == {None}  # unset: neither ok nor error
    assert set(store.span_tree(root1, max_depth=2)) == {root1, names["invoke_agent"]["span_id"]}
    slim = store.span_tree(root1, attributes_to_return=["gen_ai.request.model"])
    assert slim[names["chat"]["span_id"]]["attributes"] == {"gen_ai.request.model": "m1"}

    spans = store.query_spans([{"key": "gen_ai.request.model", "op": "eq", "value": "m1"}],
                              ["gen_ai.usage.output_tokens"])
    assert [(s["name"], s["attributes"]) for s in spans] == [("chat", {"gen_ai.usage.output_tokens": 7})]
    span = store.get_span(t1, names["chat"]["span_id"])
    assert span["attributes"]["gen_ai.request.model"] == "m1" and "status" not in span

    with pytest.raises(NotFoundError):
        store.get_trace("0" * 32)
    with pytest.raises(NotFoundError):
        store.span_tree("nope")
    with pytest.raises(InvalidRequestError):
        store.query_traces(order_by=["duration"])
    with pytest.raises(InvalidRequestError):
        store.query_traces([{"key": "x", "op": "like", "value": "a"}])


def test_store_retention(store):
    tracer = _tracer(store)
    old, _ = _request_trace(tracer, "old")
    store.prune(now_ns=time.time_ns() + 2 * 3600 * 10**9)  # two hours on: past the 1 h retention
    assert store.query_traces() == []
    for i in range(30):  # 4 spans each: 120 > max_spans
        _request_trace(tracer, f"m{i}")
    store.prune()
    with store.db.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(spans)).scalar_one() <= 100
    assert any(t for t in store.query_traces([{"key": "gen_ai.request.model", "op": "eq", "value": "m29"}]))
    assert store.query_traces([{"key": "gen_ai.request.model", "op": "eq", "value": "m0"}]) == []


def test_logged_events_build_spans(store):
    def event(kind, **kw):
        return {"trace_id": "t" * 32, "span_id": kw.pop("span_id", "s1"), "timestamp": kw.pop("ts"),
                "type": kind, "attributes": kw.pop("attributes", {}), **kw}

    store.log_event(event("structured_log", ts="2025-01-01T00:00:00+00:00",
                          payload={"type": "span_start", "name": "client-turn"}), 60)
    store.log_event(event("structured_log", span_id="s2", ts="2025-01-01T00:00:01+00:00",
                          payload={"type": "span_start", "name": "step", "parent_span_id": "s1"}), 60)
    store.log_event(event("unstructured_log", ts="2025-01-01T00:00:01.5+00:00", message="hi", severity="info"), 60)
    store.log_event(event("structured_log", span_id="s2", ts="2025-01-01T00:00:02+00:00",
                          payload={"type": "span_end", "status": "error"}), 60)
    store.log_event(event("structured_log", ts="2025-01-01T00:00:03+00:00", attributes={"turn": 1},
                          payload={"type": "span_end", "status": "ok"}), 60)
    t = store.get_trace("t" * 32)
    assert t["root_span_id"] == "s1" and t["end_time"].startswith("2025-01-01T00:00:03")
    tree = store.span_tree("s1")
    assert tree["s2"]["status"] == "error" and tree["s1"]["status"] == "ok"
    assert tree["s1"]["attributes"]["turn"] == 1
    with pytest.raises(ConflictError):
        store.log_event(event("structured_log", ts="2025-01-01T00:00:04+00:00",
                              payload={"type": "span_start", "name": "again"}), 60)
    with pytest.raises(NotFoundError):
        store.log_event(event("structured_log", span_id="s9", ts="2025-01-01T00:00:04+00:00",
                              payload={"type": "span_end", "status": "ok"}), 60)


class _FakeHandle:
    """Stands in for a DeploymentHandle: records what `.remote` was called with."""

    def __init__(self):
        self.calls = []

    def remote(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return "ref"


def test_context_crosses_a_handle_call(traced):
    """Caller side injects W3C headers; callee side runs under them: the callee's span is the caller's child."""
    handle = _FakeHandle()
    seen = {}

    async def method(x, **kwargs):
        assert TRACE_KWARG not in kwargs
        with tracing.span("callee") as s:
            seen["span"] = s
            seen["request_id"] = request_id_from_context()
        return x + 1

    with tracing.span("caller") as caller:
        token = context.attach(with_request_id(context.get_current(), "req-42"))
        TracedHandle(handle).remote(1)
        context.detach(token)
    args, kwargs = handle.calls[0]
    assert args == (1,) and kwargs[TRACE_KWARG]["traceparent"].split("-")[1] == _hex(caller)[0]
    assert asyncio.run(accepting_trace_context(method)(1, **kwargs)) == 2
    callee = seen["span"]
    assert callee.parent.span_id == caller.get_span_context().span_id
    assert callee.get_span_context().trace_id == caller.get_span_context().trace_id
    assert seen["request_id"] == "req-42"
    TracedHandle(handle).remote(2)  # no current span: nothing to carry
    assert TRACE_KWARG not in handle.calls[1][1]


class _Collector(BaseHTTPRequestHandler):
    received: list = []
    fail_first = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Collector.fail_first:
            _Collector.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Collector.received.append((self.path, self.headers["Content-Type"], self.headers.get("x-key"), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_otlp_http_export_to_a_collector():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource

    server = HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Collector.received, _Collector.fail_first = [], 1  # the first try gets a 503: retried
    try:
        exporter = OTLPHttpExporter(f"http://127.0.0.1:{server.server_port}", {"x-key": "k"}, timeout_s=5)
        provider = TracerProvider(resource=Resource.create({"service.name": "stackserve"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("root", kind=trace.SpanKind.SERVER) as root:
            with tracer.start_as_current_span("child", attributes={"gen_ai.usage.output_tokens": 5,
                                                                   "gen_ai.response.finish_reasons": ["stop"]}):
                pass
        provider.shutdown()
    finally:
        server.shutdown()
    assert len(_Collector.received) == 2
    path, ctype, key, body = _Collector.received[0]
    assert (path, ctype, key) == ("/v1/traces", "application/x-protobuf", "k")
    req = ExportTraceServiceRequest.FromString(body)
    rs = req.resource_spans[0]
    assert {kv.key: kv.value.string_value for kv in rs.resource.attributes}["service.name"] == "stackserve"
    child = rs.scope_spans[0].spans[0]
    assert child.name == "child" and child.parent_span_id == root.get_span_context().span_id.to_bytes(8, "big")
    attrs = {kv.key: kv.value for kv in child.attributes}
    assert attrs["gen_ai.usage.output_tokens"].int_value == 5
    assert [v.string_value for v in attrs["gen_ai.response.finish_reasons"].array_value.values] == ["stop"]
    root_pb = ExportTraceServiceRequest.FromString(_Collector.received[1][3]).resource_spans[0].scope_spans[0].spans[0]
    assert root_pb.kind == 2 and root_pb.trace_id == child.trace_id  # SPAN_KIND_SERVER


def _app() -> FastAPI:
    from fastapi.responses import JSONResponse

    from serve.telemetry.http import TracingMiddleware, trace_id_header

    app = FastAPI()

    @app.exception_handler(Exception)
    async def unexpected(request, exc):  # like serve/app.py's: runs outside the middleware
        return JSONResponse({"error": str(exc)}, status_code=500, headers=trace_id_header(request.scope))

    @app.get("/items/{item_id}")
    async def item(item_id: str):
        with tracing.span("work"):
            return {"id": item_id}

    @app.get("/stream")
    async def stream():
        async def body():
            for i in range(3):
                await asyncio.sleep(0.01)
                yield f"data: {i}\n\n"
        return StreamingResponse(body(), media_type="text/event-stream")

    @app.get("/boom")
    async def boom():
        raise RuntimeError("boom")

    app.add_middleware(TracingMiddleware)
    return app


def test_ingress_middleware(traced):
    async def run():
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            r1 = await c.get("/items/7", headers={"traceparent": parent, "x-request-id": "rid-1"})
            r2 = await c.get("/stream")
            r3 = await c.get("/boom")
            return r1, r2, r3

    r1, r2, r3 = asyncio.run(run())
    assert r1.headers["x-trace-id"] == "0af7651916cd43dd8448eb211c80319c"  # the client's trace, continued
    assert r2.text.count("data:") == 3 and len(r2.headers["x-trace-id"]) == 32
    tracing.force_flush()
    store = traced
    t1 = store.get_trace("0af7651916cd43dd8448eb211c80319c")
    tree = store.span_tree(t1["root_span_id"])
    root = tree[t1["root_span_id"]]
    assert root["name"] == "GET /items/{item_id}" and root["parent_span_id"] == "b7ad6b7169203331"
    assert root["attributes"]["stackserve.request_id"] == "rid-1"
    assert root["attributes"]["http.response.status_code"] == 200
    assert root["attributes"]["stackserve.deployment"] == "Test"
    assert [s["name"] for s in tree.values() if s["parent_span_id"] == root["span_id"]] == ["work"]
    streamed = store.get_trace(r2.headers["x-trace-id"])
    assert streamed["end_time"] > streamed["start_time"]
    boom = store.span_tree(store.get_trace(r3.headers["x-trace-id"])["root_span_id"])
    assert [s["status"] for s in boom.values()] == ["error"]


def test_inference_timing(traced):
    """An engine stream observed inside a call: TTFT, decode time, GenAI attributes, prefill/decode spans."""
    from types import SimpleNamespace

    async def engine():
        await asyncio.sleep(0.02)
        yield SimpleNamespace(tokens=[1], finish_reason=None, num_prompt_tokens=11)
        for _ in range(3):
            await asyncio.sleep(0.005)
            yield SimpleNamespace(tokens=[2], finish_reason=None, num_prompt_tokens=0)
        yield SimpleNamespace(tokens=[3], finish_reason="length", num_prompt_tokens=0)

    req = SimpleNamespace(n=1, max_tokens=5, max_completion_tokens=None, temperature=0.0, top_p=None, seed=None,
                          stream=True)
    inference = InferenceTelemetry("m", "meta-reference")

    async def serve_request():
        with tracing.span("ingress", attributes={"__root__": True}) as root:
            with inference.call("chat", req) as call:
                async for out in observe_generation(engine(), 0):
                    call.chunk({"choices": [{"index": 0, "finish_reason": out.finish_reason}]})
        return root

    root = asyncio.run(serve_request())
    tracing.force_flush()
    tree = traced.span_tree(_hex(root)[1])
    by_name = {s["name"]: s for s in tree.values()}
    chat = by_name["chat m"]["attributes"]
    assert chat["gen_ai.system"] == "meta-reference" and chat["gen_ai.request.max_tokens"] == 5
    assert chat["gen_ai.usage.input_tokens"] == 11 and chat["gen_ai.usage.output_tokens"] == 5
    assert chat["gen_ai.response.finish_reasons"] == ["length"]
    assert 0.02 <= chat["gen_ai.latency.time_to_first_token"] < chat["gen_ai.latency.e2e"]
    assert chat["gen_ai.latency.time_in_model_decode"] >= 0.015
    assert by_name["prefill"]["parent_span_id"] == by_name["decode"]["parent_span_id"] == by_name["chat m"]["span_id"]
    assert by_name["prefill"]["end_time"] == by_name["decode"]["start_time"]  # both meet at the first token


def test_tracing_off_wraps_nothing():
    tracing.shutdown_tracing()
    assert not tracing.enabled()
    inference = InferenceTelemetry("m", "meta-reference")
    stream = object()
    assert observe_generation(stream, 0) is stream
    from types import SimpleNamespace

    with inference.call("chat", SimpleNamespace(n=1)) as call:
        assert call.finish({"x": 1}) == {"x": 1}


def test_json_logs_carry_ids(traced):
    import logging

    out = io.StringIO()
    handler = setup_json_logs("Ingress", stream=out)
    try:
        with tracing.span("req") as s:
            token = context.attach(with_request_id(context.get_current(), "rid-9"))
            logging.getLogger("stackserve.llm").info("hello %s", "there", extra={"status": 200})
            context.detach(token)
        logging.getLogger("stackserve.llm").warning("outside")
    finally:
        logging.getLogger("stackserve").removeHandler(handler)
        logging.getLogger("stackserve").propagate = True
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["message"] == "hello there" and first["status"] == 200 and first["deployment"] == "Ingress"
    assert (first["trace_id"], first["span_id"]) == _hex(s) and first["request_id"] == "rid-9"
    assert second["trace_id"] is None and second["request_id"] is None and second["level"] == "WARNING"


def test_config_section(tmp_path):
    base = {"models": [{"model_id": "m", "source": "m"}], "data_dir": str(tmp_path)}
    cfg = parse_config(base)
    assert not cfg.telemetry.tracing and cfg.telemetry.metrics
    assert cfg.telemetry_store_url() == f"sqlite:///{tmp_path / 'telemetry.db'}"
    cfg = parse_config({**base, "telemetry": {"tracing": True, "otlp": {"endpoint": "http://collector:4318"},
                                              "span_store": {"retention_hours": 24, "max_spans": 1000}}})
    assert cfg.telemetry.otlp.endpoint == "http://collector:4318" and cfg.telemetry.span_store.max_spans == 1000
    from serve.config import ConfigError

    with pytest.raises(ConfigError, match="telemetry.sampling_ratio"):
        parse_config({**base, "telemetry": {"sampling_ratio": 2}})
    with pytest.raises(ConfigError, match="telemetry.span_store.ttl: unknown key"):
        parse_config({**base, "telemetry": {"span_store": {"ttl": 3}}})


def test_logged_event_times_must_fit_the_store(store):
    from pydantic import ValidationError

    from serve.protocol.telemetry import MAX_TTL_SECONDS, LogEventRequest

    def request(timestamp: str, ttl: int) -> LogEventRequest:
        event = {"type": "metric", "trace_id": "t", "span_id": "s", "timestamp": timestamp, "metric": "m",
                 "value": 1.5, "unit": "ms"}
        return LogEventRequest.model_validate({"event": event, "ttl_seconds": ttl})

    for timestamp, ttl in [("3545-04-11T18:36:47-22:09", 40), ("1969-12-31T23:59:59Z", 40),
                           ("2025-01-01T00:00:00Z", MAX_TTL_SECONDS + 1)]:
        with pytest.raises(ValidationError):
            request(timestamp, ttl)
    latest = request("2199-12-31T23:59:59Z", MAX_TTL_SECONDS)  # the extremes still fit int64 nanoseconds
    store.log_event(latest.event.model_dump(), latest.ttl_seconds)
