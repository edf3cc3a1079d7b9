"""Llama Stack 0.2 native routes through the graph: every JSON body checked strictly against llama-stack-client
0.2.12's own types (required fields present, no null where the type has none, enums), and the served OpenAPI
declares a response schema for each of these routes (no "any" bodies)."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import httpx
import pytest
from llama_stack_client.types import (
    HealthInfo,
    ListProvidersResponse,
    ListRoutesResponse,
    ListShieldsResponse,
    ListToolGroupsResponse,
    ListToolsResponse,
    ListVectorDBsResponse,
    ProviderInfo,
    QueryChunksResponse,
    RunShieldResponse,
    Shield,
    Tool,
    ToolDef,
    ToolGroup,
    ToolInvocationResult,
    Trace,
    VectorDBRegisterResponse,
    VectorDBRetrieveResponse,
    VersionInfo,
)
from llama_stack_client.types.agent_create_response import AgentCreateResponse
from llama_stack_client.types.agents import AgentTurnResponseStreamChunk, Session, SessionCreateResponse, Turn
from llama_stack_client.types.agents.step_retrieve_response import StepRetrieveResponse
from llama_stack_client.types.dataset_iterrows_response import DatasetIterrowsResponse
from llama_stack_client.types.dataset_register_response import DatasetRegisterResponse
from llama_stack_client.types.dataset_retrieve_response import DatasetRetrieveResponse
from llama_stack_client.types.list_datasets_response import ListDatasetsResponse
from llama_stack_client.types.query_spans_response import QuerySpansResponse
from llama_stack_client.types.shared.agent_config import AgentConfig
from llama_stack_client.types.shared.query_result import QueryResult
from llama_stack_client.types.span_with_status import SpanWithStatus
from llama_stack_client.types.telemetry_get_span_response import TelemetryGetSpanResponse

from tests.conftest import GUARD_TINY, MINILM, SMOLLM2
from tests.llama_shapes import ShapeError, check_shape, validate

pytestmark = pytest.mark.graph

FAMILIES = re.compile(r"^/v1(alpha|beta)?/(health|version|providers|inspect|shields|safety|vector-dbs|vector-io|"
                      r"tool-runtime|toolgroups|tools|agents|datasets|datasetio|telemetry)(/|$)")
MCP = "model-context-protocol"


@pytest.fixture(scope="module")
def http(base_url) -> httpx.Client:
    with httpx.Client(base_url=base_url, timeout=300) as c:
        yield c


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, (r.request.method, r.request.url, r.status_code, r.text[:500])
    return r.json()


def test_strict_checker_fails_on_bad_bodies():
    """The helper the other tests rely on: it rejects missing fields, nulls and wrong literals, at any depth."""
    for bad in ({"identifier": "x", "type": "shield"}, {"identifier": "x", "provider_id": None, "type": "shield"},
                {"identifier": "x", "provider_id": "p", "type": "vector_db"}):
        with pytest.raises(ShapeError):
            check_shape(Shield, bad)
    with pytest.raises(ShapeError):  # a step whose model_response lacks stop_reason, deep in a union
        check_shape(StepRetrieveResponse, {"step": {"step_type": "inference", "step_id": "s", "turn_id": "t",
                                                    "model_response": {"role": "assistant", "content": "hi"}}})


def test_openapi_declares_every_response(http):
    spec = ok(http.get("/openapi.json"))
    seen = 0
    for path, ops in spec["paths"].items():
        if not FAMILIES.match(path):
            continue
        for method, op in ops.items():
            content = op["responses"]["200"]["content"]
            schema = content["application/json"]["schema"]
            assert "$ref" in schema or schema == {"type": "null"}, (method, path, schema)
            if "$ref" in schema:
                name = schema["$ref"].rsplit("/", 1)[1]
                assert spec["components"]["schemas"][name].get("properties"), (method, path, name)
            seen += 1
    assert seen >= 50
    turn = spec["paths"]["/v1/agents/{agent_id}/session/{session_id}/turn"]["post"]["responses"]["200"]["content"]
    event = turn["text/event-stream"]["schema"]
    assert event["required"] == ["event"] and "payload" in event["properties"]["event"]["properties"]


def test_meta_shapes(http):
    validate(HealthInfo, ok(http.get("/v1/health")))
    validate(VersionInfo, ok(http.get("/v1/version")))
    providers = ok(http.get("/v1/providers"))
    validate(ListProvidersResponse, providers)
    validate(ProviderInfo, ok(http.get(f"/v1/providers/{providers['data'][0]['provider_id']}")))
    routes = ok(http.get("/v1/inspect/routes"))
    validate(ListRoutesResponse, routes)
    assert any(r["route"] == "/v1/inspect/routes" for r in routes["data"])


def test_safety_shapes(http):
    validate(ListShieldsResponse, ok(http.get("/v1/shields")))
    validate(Shield, ok(http.get("/v1/shields/llama-guard")))
    name = f"shape-guard-{secrets.token_hex(3)}"
    created = ok(http.post("/v1/shields", json={"shield_id": name, "provider_id": "code-scanner"}))
    assert validate(Shield, created).identifier == name
    bad = ok(http.post("/v1/safety/run-shield", json={"shield_id": "llama-guard", "params": {},
                                                       "messages": [{"role": "user", "content": "I will kill it"}]}))
    assert validate(RunShieldResponse, bad).violation.violation_level == "error"
    fine = ok(http.post("/v1/safety/run-shield", json={"shield_id": "llama-guard", "params": {},
                                                        "messages": [{"role": "user", "content": "Bake bread"}]}))
    assert validate(RunShieldResponse, fine).violation is None
    assert ok(http.delete(f"/v1/shields/{name}")) is None


def test_vector_io_shapes(http):
    db = f"shape-db-{secrets.token_hex(3)}"
    created = ok(http.post("/v1/vector-dbs", json={"vector_db_id": db, "embedding_model": MINILM,
                                                    "embedding_dimension": 384}))
    validate(VectorDBRegisterResponse, created)
    validate(VectorDBRetrieveResponse, ok(http.get(f"/v1/vector-dbs/{db}")))
    listed = ok(http.get("/v1/vector-dbs"))
    assert db in {d.identifier for d in validate(ListVectorDBsResponse, listed).data}
    chunks = [{"content": "Honeybees dance to share where flowers are.", "metadata": {"document_id": "bees"}},
              {"content": [{"type": "text", "text": "Volcanoes erupt molten rock."}], "metadata": {"n": 2}}]
    assert ok(http.post("/v1/vector-io/insert", json={"vector_db_id": db, "chunks": chunks})) is None
    found = ok(http.post("/v1/vector-io/query", json={"vector_db_id": db, "query": "bees dancing"}))
    assert validate(QueryChunksResponse, found).chunks
    doc = {"document_id": "sourdough", "content": "Sourdough rises with wild yeast.", "mime_type": "text/plain",
           "metadata": {}}
    assert ok(http.post("/v1/tool-runtime/rag-tool/insert", json={"vector_db_id": db, "documents": [doc],
                                                                   "chunk_size_in_tokens": 64})) is None
    result = ok(http.post("/v1/tool-runtime/rag-tool/query", json={"vector_db_ids": [db], "content": "yeast"}))
    assert validate(QueryResult, result).metadata["document_ids"]
    assert ok(http.delete(f"/v1/vector-dbs/{db}")) is None


def test_tools_shapes(http, mcp_server_url):
    validate(ListToolGroupsResponse, ok(http.get("/v1/toolgroups")))
    group = f"mcp::shapes-{secrets.token_hex(3)}"
    assert ok(http.post("/v1/toolgroups", json={"toolgroup_id": group, "provider_id": MCP,
                                                "mcp_endpoint": {"uri": mcp_server_url}})) is None
    assert validate(ToolGroup, ok(http.get(f"/v1/toolgroups/{group}"))).mcp_endpoint.uri == mcp_server_url
    tools = validate(ListToolsResponse, ok(http.get("/v1/tools", params={"toolgroup_id": group})))
    assert [t.identifier for t in tools.data] == ["add", "lookup_capital", "explode"]
    validate(Tool, ok(http.get("/v1/tools/knowledge_search")))
    validate(Tool, ok(http.get("/v1/tools/add")))
    for params in ({"tool_group_id": group}, {"mcp_endpoint[uri]": mcp_server_url}, {"tool_group_id": "builtin::rag"}):
        body = ok(http.get("/v1/tool-runtime/list-tools", params=params))
        validate(list[ToolDef], body["data"])
    for name, kwargs in (("add", {"a": 1, "b": 2}), ("explode", {"reason": "shape test"})):
        validate(ToolInvocationResult, ok(http.post("/v1/tool-runtime/invoke",
                                                    json={"tool_name": name, "kwargs": kwargs})))
    assert ok(http.delete(f"/v1/toolgroups/{group}")) is None


def _events(r: httpx.Response) -> list[dict]:
    assert r.status_code == 200, r.text[:500]
    return [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]


def _check_stream(events: list[dict]) -> list[str]:
    for e in events:
        validate(AgentTurnResponseStreamChunk, e)
    return [e["event"]["payload"]["event_type"] for e in events]


def test_agents_shapes(http):
    """A client tool turn on the tiny model (forced call, then resumed), streamed and not, and every read route."""
    tool = {"name": "lookup", "description": "Look a word up.",
            "parameters": [{"name": "word", "parameter_type": "str", "description": "the word", "required": True}]}
    config = {"model": GUARD_TINY, "instructions": "Use tools.", "client_tools": [tool],
              "tool_config": {"tool_choice": "lookup"}, "sampling_params": {"strategy": {"type": "greedy"},
                                                                            "max_tokens": 16}}
    aid = validate(AgentCreateResponse, ok(http.post("/v1/agents", json={"agent_config": config}))).agent_id
    agent = ok(http.get(f"/v1/agents/{aid}"))
    assert agent["agent_id"] == aid
    validate(AgentConfig, agent["agent_config"])
    listed = ok(http.get("/v1/agents"))
    assert isinstance(listed["has_more"], bool) and aid in {a["agent_id"] for a in listed["data"]}
    sid = validate(SessionCreateResponse, ok(http.post(f"/v1/agents/{aid}/session",
                                                       json={"session_name": "shapes"}))).session_id
    base = f"/v1/agents/{aid}/session/{sid}"

    waiting = validate(Turn, ok(http.post(f"{base}/turn", json={"messages": [{"role": "user", "content": "sea"}]})))
    call = waiting.output_message.tool_calls[0]
    answer = [{"call_id": call.call_id, "tool_name": "lookup", "content": "salt water"}]
    done = validate(Turn, ok(http.post(f"{base}/turn/{waiting.turn_id}/resume", json={"tool_responses": answer})))
    assert [s.step_type for s in done.steps][-2:] == ["tool_execution", "inference"]

    r = http.post(f"{base}/turn", json={"messages": [{"role": "user", "content": "sky"}], "stream": True})
    kinds = _check_stream(_events(r))
    assert kinds[0] == "turn_start" and kinds[-1] == "turn_awaiting_input" and "step_progress" in kinds
    turn_id = _events(r)[0]["event"]["payload"]["turn_id"]
    call_id = _events(r)[-1]["event"]["payload"]["turn"]["output_message"]["tool_calls"][0]["call_id"]
    r = http.post(f"{base}/turn/{turn_id}/resume", json={"stream": True, "tool_responses": [
        {"call_id": call_id, "tool_name": "lookup", "content": "blue"}]})
    kinds = _check_stream(_events(r))
    assert kinds[0] == "step_complete" and kinds[-1] == "turn_complete"

    session = validate(Session, ok(http.get(base)))
    assert [t.turn_id for t in session.turns] == [waiting.turn_id, turn_id]
    sessions = ok(http.get(f"/v1/agents/{aid}/sessions"))
    validate(list[Session], sessions["data"])
    turn = validate(Turn, ok(http.get(f"{base}/turn/{turn_id}")))
    for step in turn.steps:
        validate(StepRetrieveResponse, ok(http.get(f"{base}/turn/{turn_id}/step/{step.step_id}")))
    assert ok(http.delete(base)) is None
    assert ok(http.delete(f"/v1/agents/{aid}")) is None


def test_agent_shield_step_shape(http):
    """A guardrail refusal is a shield_call step carrying its violation."""
    config = {"model": SMOLLM2, "instructions": "", "input_shields": ["llama-guard"],
              "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 8}}
    aid = ok(http.post("/v1/agents", json={"agent_config": config}))["agent_id"]
    sid = ok(http.post(f"/v1/agents/{aid}/session", json={"session_name": "guarded"}))["session_id"]
    turn = validate(Turn, ok(http.post(f"/v1/agents/{aid}/session/{sid}/turn",
                                       json={"messages": [{"role": "user", "content": "I will kill it"}]})))
    (step,) = [s for s in turn.steps if s.step_type == "shield_call"]
    assert step.violation.violation_level == "error"
    ok(http.delete(f"/v1/agents/{aid}"))


def test_datasets_shapes(http):
    name = f"shapes-{secrets.token_hex(3)}"
    rows = [{"question": "2+2?", "answer": "4"}, {"question": "capital of Kenya?", "answer": "Nairobi"}]
    created = ok(http.post("/v1/datasets", json={"purpose": "eval/question-answer", "dataset_id": name,
                                                 "source": {"type": "rows", "rows": rows}}))
    validate(DatasetRegisterResponse, created)
    for prefix in ("/v1", "/v1beta"):
        validate(DatasetRetrieveResponse, ok(http.get(f"{prefix}/datasets/{name}")))
        validate(ListDatasetsResponse, ok(http.get(f"{prefix}/datasets")))
    assert ok(http.post(f"/v1/datasetio/append-rows/{name}", json={"rows": [{"question": "1+1?", "answer": "2"}]})
              ) is None
    page = validate(DatasetIterrowsResponse, ok(http.get(f"/v1/datasetio/iterrows/{name}",
                                                         params={"start_index": 0, "limit": 2})))
    assert len(page.data) == 2 and page.has_more
    assert ok(http.delete(f"/v1/datasets/{name}")) is None


def test_telemetry_shapes(http):
    rid = f"req-{secrets.token_hex(6)}"
    r = http.post("/v1/chat/completions", headers={"x-request-id": rid},
                  json={"model": SMOLLM2, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    trace_id = r.headers["x-trace-id"]
    by_request = [{"key": "stackserve.request_id", "op": "eq", "value": rid}]
    deadline, found = time.time() + 60, []
    while time.time() < deadline and not found:
        found = ok(http.post("/v1/telemetry/traces", json={"attribute_filters": by_request}))["data"]
        time.sleep(0.5)
    validate(list[Trace], found)
    trace = validate(Trace, ok(http.get(f"/v1/telemetry/traces/{trace_id}")))
    validate(TelemetryGetSpanResponse, ok(http.get(f"/v1/telemetry/traces/{trace_id}/spans/{trace.root_span_id}")))
    tree = ok(http.post(f"/v1/telemetry/spans/{trace.root_span_id}/tree", json={}))
    validate(dict[str, SpanWithStatus], tree["data"])
    spans = ok(http.post("/v1/telemetry/spans", json={"attribute_filters": by_request,
                                                      "attributes_to_return": ["stackserve.request_id"]}))
    assert validate(QuerySpansResponse, spans).data
    event = {"type": "unstructured_log", "trace_id": secrets.token_hex(16), "span_id": secrets.token_hex(8),
             "timestamp": "2025-05-01T10:00:00Z", "message": "shape", "severity": "info"}
    assert ok(http.post("/v1/telemetry/events", json={"event": event, "ttl_seconds": 60})) is None
