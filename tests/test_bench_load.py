"""The load generator against a fake OpenAI server with known timings: measured TTFT/ITL/E2E, concurrency,
open-loop pacing, error accounting, timeouts and the hard time bound. No Ray, no model."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from fake_openai import FakeOpenAI

from benchmarks.load import LoadGenerator, LoadSpec
from benchmarks.metrics import summarize
from benchmarks.scenarios import ChatScenario, CompletionsScenario, EmbeddingsScenario, RequestOptions
from benchmarks.workloads import WorkItem

ITEMS = [WorkItem("alpha beta gamma", 3, 10)]
TTFT, ITL = 0.05, 0.01


@pytest.fixture
def fake():
    server = FakeOpenAI(ttft_s=TTFT, itl_s=ITL).start()
    yield server
    server.stop()


def run(server: FakeOpenAI, spec: LoadSpec, scenario=None, items=ITEMS, **opts):
    scenario = scenario or ChatScenario()
    gen = LoadGenerator(server.base_url + scenario.path, scenario, RequestOptions(model=server.model, **opts))
    return asyncio.run(gen.run(spec, items, items))


def test_streamed_timings_match_the_server(fake):
    out = run(fake, LoadSpec("concurrency", 1, num_requests=4, warmup_requests=1))
    assert len(out.warmup) == 1 and len(out.results) == 4
    m = summarize(out.results, out.duration_s)
    assert m["completed"] == 4 and m["failed"] == 0
    assert m["token_source"] == {"usage": 4} and m["mean_output_tokens"] == 10
    # the server sends token 1 at 50 ms and then one every 10 ms; allow scheduling jitter
    assert TTFT <= m["ttft_ms"]["p50"] / 1000 < TTFT + 0.03
    assert m["itl_ms"]["n"] == 4 * 9
    assert m["itl_ms"]["mean"] == pytest.approx(ITL * 1000, abs=3)
    assert m["tpot_ms"]["mean"] == pytest.approx(ITL * 1000, abs=3)
    assert m["e2e_ms"]["p50"] / 1000 == pytest.approx(TTFT + 9 * ITL, abs=0.03)
    # closed loop at concurrency 1: 4 requests back to back
    assert m["request_throughput"] == pytest.approx(1 / (TTFT + 9 * ITL), rel=0.25)
    body = fake.bodies[-1]
    assert body["ignore_eos"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 10 and body["messages"][0]["content"] == "alpha beta gamma"


def test_concurrency_is_held(fake):
    out = run(fake, LoadSpec("concurrency", 4, num_requests=12))
    assert fake.max_in_flight == 4
    assert sum(r.ok for r in out.results) == 12


def test_open_loop_sends_on_schedule(fake):
    out = run(fake, LoadSpec("rate", 40, num_requests=20, seed=3))
    m = summarize(out.results, out.duration_s)
    assert m["completed"] == 20
    assert m["send_lag_ms"]["max"] < 250  # the client kept up with its schedule (loose: CI boxes are loaded)
    # the server saw the requests at the scheduled gaps (not one after another: it is an open loop)
    sent = np.array([r.start for r in out.results])
    sched = np.array([r.scheduled for r in out.results])
    assert np.allclose(sent - sent[0], sched - sched[0], atol=0.25)
    assert fake.max_in_flight > 1


def test_open_loop_max_concurrency_caps_in_flight(fake):
    run(fake, LoadSpec("rate", float("inf"), num_requests=10, max_concurrency=3))
    assert fake.max_in_flight == 3


def test_error_accounting(fake):
    fake.plan = ["ok", "fail-503", "ok", "fail-400", "midstream", "truncate", "ok", "ok", "ok", "ok"]
    out = run(fake, LoadSpec("concurrency", 2, num_requests=20))
    m = summarize(out.results, out.duration_s)
    assert m["requests"] == 20
    assert m["errors_by_type"] == {"http_400": 2, "http_503": 2, "incomplete_stream": 2, "stream_error": 2}
    assert m["error_rate"] == pytest.approx(0.4)
    assert m["completed"] == 12
    assert m["error_examples"]["http_503"] == "engine queue is full"
    assert m["error_examples"]["stream_error"] == "engine failed"
    # failed requests count in the error rate but not in throughput or latency
    assert m["e2e_ms"]["n"] == 12 and m["output_tokens_total"] == 120


def test_request_timeout_and_connection_errors(fake):
    out = run(fake, LoadSpec("concurrency", 2, num_requests=2, request_timeout_s=0.3), extra_body={"user": "hang"})
    assert {r.error_type for r in out.results} == {"timeout"}
    gen = LoadGenerator("http://127.0.0.1:9/v1/chat/completions", ChatScenario(), RequestOptions(model="m"))
    out = asyncio.run(gen.run(LoadSpec("concurrency", 1, num_requests=2), ITEMS))
    assert {r.error_type for r in out.results} == {"connection_error"}


def test_hard_time_bound(fake):
    t = time.perf_counter()
    out = run(fake, LoadSpec("concurrency", 3, num_requests=100, max_time_s=0.6), extra_body={"user": "hang"})
    assert time.perf_counter() - t < 1.5
    assert out.hit_time_limit and out.notes
    m = summarize(out.results, out.duration_s)
    assert m["errors_by_type"] == {"aborted_at_time_limit": 3}


def test_hard_time_bound_open_loop_stops_issuing(fake):
    t = time.perf_counter()
    out = run(fake, LoadSpec("rate", 5, num_requests=1000, max_time_s=0.5), extra_body={"user": "hang"})
    assert time.perf_counter() - t < 1.5
    assert out.hit_time_limit
    assert 1 <= len(out.results) <= 6  # ~2.5 arrivals expected in 0.5 s at 5 req/s
    assert all(r.error_type == "aborted_at_time_limit" for r in out.results)


def test_duration_bound(fake):
    t = time.perf_counter()
    out = run(fake, LoadSpec("concurrency", 2, duration_s=0.5))
    wall = time.perf_counter() - t
    assert 0.5 <= wall < 0.5 + 0.14 + 0.3  # stops issuing at 0.5 s, drains what is in flight
    assert len(out.results) >= 4 and all(r.ok for r in out.results)


def test_non_streamed_and_completions(fake):
    out = run(fake, LoadSpec("concurrency", 1, num_requests=2), stream=False)
    m = summarize(out.results, out.duration_s)
    assert m["completed"] == 2 and m["ttft_ms"]["n"] == 0 and m["itl_ms"]["n"] == 0
    assert m["e2e_ms"]["p50"] / 1000 == pytest.approx(TTFT + 9 * ITL, abs=0.03)
    assert "stream_options" not in fake.bodies[-1]
    out = run(fake, LoadSpec("concurrency", 1, num_requests=2), scenario=CompletionsScenario())
    m = summarize(out.results, out.duration_s)
    assert m["completed"] == 2 and m["mean_output_tokens"] == 10
    assert fake.bodies[-1]["prompt"] == "alpha beta gamma"


def test_tokenizer_counts_when_the_server_sends_no_usage(fake):
    fake.usage = False
    out = run(fake, LoadSpec("concurrency", 1, num_requests=2))
    m = summarize(out.results, out.duration_s, count=lambda text: len(text.split()))
    assert m["token_source"] == {"tokenizer": 2} and m["mean_output_tokens"] == 10


def test_embeddings_scenario(fake):
    items = [WorkItem("one two three four", 4, 0)]
    out = run(fake, LoadSpec("concurrency", 2, num_requests=6), scenario=EmbeddingsScenario(), items=items)
    m = summarize(out.results, out.duration_s)
    assert m["completed"] == 6 and fake.seen["embeddings"] == 6
    assert m["input_tokens_total"] == 6 * 4 and m["output_tokens_total"] == 0
    assert m["ttft_ms"]["n"] == 0 and m["e2e_ms"]["n"] == 6
    body = fake.bodies[-1]
    assert body == {"model": fake.model, "input": "one two three four", "encoding_format": "float"}
