"""Benchmark metric math on hand-made request results: percentiles, TTFT/TPOT/ITL, throughput, goodput, errors;
and the CPU seconds by process between two snapshots (where a phase's CPU went)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.client import RequestResult
from benchmarks.metrics import distribution, meets_slos, parse_slos, resolve_tokens, summarize


def result(i: int, ttft: float | None, gaps: list[float], out_tokens: int, start: float = 0.0, ok: bool = True,
           error_type: str | None = None, prompt_tokens: int = 10) -> RequestResult:
    r = RequestResult(i, prompt_tokens, out_tokens, start=start, ok=ok, error_type=error_type, ttft=ttft,
                      itl=list(gaps), chunks=len(gaps) + 1)
    r.end = start + (ttft or 0.0) + sum(gaps)
    if ok:
        r.usage = {"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens}
        r.output_tokens = out_tokens
    return r


def test_distribution_percentiles_in_ms():
    d = distribution([0.001 * v for v in range(1, 101)])  # 1..100 ms
    assert d["mean"] == pytest.approx(50.5)
    assert d["p50"] == pytest.approx(50.5)
    assert d["p90"] == pytest.approx(90.1)
    assert d["p99"] == pytest.approx(99.01)
    assert (d["min"], d["max"], d["n"]) == (pytest.approx(1.0), pytest.approx(100.0), 100)
    assert distribution([])["p50"] is None


def test_ttft_tpot_itl_e2e():
    # 5 tokens: first at 200 ms, then gaps of 50, 50, 100, 100 -> e2e 500 ms, TPOT (500-200)/4 = 75 ms
    r = result(0, 0.2, [0.05, 0.05, 0.1, 0.1], 5)
    assert r.e2e == pytest.approx(0.5)
    assert r.tpot == pytest.approx(0.075)
    m = summarize([r], duration_s=1.0)
    assert m["ttft_ms"]["p50"] == pytest.approx(200.0)
    assert m["tpot_ms"]["mean"] == pytest.approx(75.0)
    assert m["itl_ms"]["mean"] == pytest.approx(75.0)
    assert m["itl_ms"]["p50"] == pytest.approx(75.0)
    assert m["itl_ms"]["n"] == 4
    assert m["e2e_ms"]["p50"] == pytest.approx(500.0)
    # a one-token answer has no TPOT
    assert result(1, 0.1, [], 1).tpot is None


def test_throughput_and_pooled_itl():
    rs = [result(0, 0.1, [0.02] * 9, 10), result(1, 0.3, [0.04] * 9, 10, prompt_tokens=30)]
    m = summarize(rs, duration_s=2.0)
    assert m["request_throughput"] == pytest.approx(1.0)
    assert m["output_throughput"] == pytest.approx(10.0)
    assert m["input_throughput"] == pytest.approx(20.0)
    assert m["total_token_throughput"] == pytest.approx(30.0)
    assert m["itl_ms"]["n"] == 18
    assert m["itl_ms"]["p50"] == pytest.approx(30.0)  # 9 x 20 ms and 9 x 40 ms pooled
    assert m["ttft_ms"]["mean"] == pytest.approx(200.0)
    assert m["tpot_ms"]["p50"] == pytest.approx(30.0)
    assert m["token_source"] == {"usage": 2}
    assert (m["cached_tokens_total"], m["cached_token_share"]) == (0, 0.0)  # the server reported no cache hits


def test_cached_token_share_from_usage():
    rs = [result(0, 0.1, [0.02], 2, prompt_tokens=40), result(1, 0.1, [0.02], 2, prompt_tokens=60)]
    rs[0].usage["prompt_tokens_details"] = {"cached_tokens": 30}  # chat/completions
    rs[1].usage["input_tokens_details"] = {"cached_tokens": 20}  # Responses
    m = summarize(rs, duration_s=1.0)
    assert (m["cached_tokens_total"], m["cached_token_share"]) == (50, pytest.approx(0.5))


def test_goodput_under_slos():
    rs = [
        result(0, 0.10, [0.02] * 9, 10),  # ttft 100, tpot 20: good
        result(1, 0.60, [0.02] * 9, 10),  # ttft 600: violates ttft <= 500
        result(2, 0.10, [0.08] * 9, 10),  # tpot 80: violates tpot <= 50
        result(3, 0.20, [0.05] * 9, 10),  # tpot 50: exactly on the bound -> good
        result(4, None, [], 0, ok=False, error_type="http_503"),  # failed: never good
    ]
    slos = parse_slos(["ttft:500", "tpot:50"])
    assert slos == {"ttft": 500.0, "tpot": 50.0}
    assert [meets_slos(r, slos) for r in rs] == [True, False, False, True, False]
    m = summarize(rs, duration_s=2.0, slos_ms=slos)
    assert m["goodput"]["good_requests"] == 2
    assert m["goodput"]["request_goodput"] == pytest.approx(1.0)
    assert m["goodput"]["good_fraction"] == pytest.approx(0.4)
    # no SLOs: every completed request is good
    assert summarize(rs, duration_s=2.0)["goodput"]["good_requests"] == 4


def test_slo_parsing_rejects_unknown_metrics():
    assert parse_slos(["ttft:100,e2e:2000", "itl_ms:30"]) == {"ttft": 100.0, "e2e": 2000.0, "itl": 30.0}
    with pytest.raises(ValueError):
        parse_slos(["latency:100"])


def test_errors_by_type_and_rate():
    rs = [result(i, 0.1, [0.01], 2) for i in range(6)]
    rs += [result(6, None, [], 0, ok=False, error_type="http_503"), result(7, None, [], 0, ok=False,
                                                                           error_type="http_503"),
           result(8, None, [], 0, ok=False, error_type="timeout"),
           result(9, None, [], 0, ok=False, error_type="stream_error")]
    rs[6].error = "engine queue is full"
    m = summarize(rs, duration_s=1.0)
    assert (m["requests"], m["completed"], m["failed"]) == (10, 6, 4)
    assert m["error_rate"] == pytest.approx(0.4)
    assert m["errors_by_type"] == {"http_503": 2, "stream_error": 1, "timeout": 1}
    assert m["error_examples"]["http_503"] == "engine queue is full"
    assert m["request_throughput"] == pytest.approx(6.0)


def test_token_counts_fall_back_to_the_tokenizer():
    r = result(0, 0.1, [0.01, 0.01], 3)
    r.usage = None
    r.text = " a b c d"
    resolve_tokens([r], count=lambda text: len(text.split()))
    assert (r.output_tokens, r.prompt_tokens, r.token_source) == (4, 10, "tokenizer")
    assert r.text == ""  # dropped once counted
    q = result(1, 0.1, [0.01], 2)
    q.usage = None
    resolve_tokens([q], count=None)
    assert (q.output_tokens, q.token_source) == (2, "chunks")


def test_send_lag_reported_for_open_loop():
    rs = [result(i, 0.1, [0.01], 2, start=i * 0.1 + 0.002) for i in range(5)]
    for i, r in enumerate(rs):
        r.scheduled = i * 0.1
    m = summarize(rs, duration_s=1.0)
    assert m["send_lag_ms"]["mean"] == pytest.approx(2.0)
    assert np.isclose(m["send_lag_ms"]["max"], 2.0)


def test_cpu_seconds_between_snapshots_follow_each_process():
    import os
    import time

    from benchmarks.sysinfo import cpu_seconds_between, process_cpu_seconds

    before = {1: ("ray::IDLE", 5.0), 2: ("ray::MapWorker(X)", 1.0), 3: ("gone", 9.0)}
    after = {1: ("ray::ServeReplica:app:LLM", 12.0), 2: ("ray::MapWorker(X)", 1.2), 4: ("new", 0.8)}
    # a retitled worker counts under its new name; a new process whole; small ones and ended ones not at all
    assert cpu_seconds_between(before, after) == {"ray::ServeReplica:app:LLM": 7.0, "new": 0.8}

    start = process_cpu_seconds()
    assert os.getpid() in start
    t = time.process_time()
    while time.process_time() - t < 0.3:  # burn CPU in this process
        pass
    mine = start[os.getpid()][0]
    assert cpu_seconds_between(start, process_cpu_seconds(), at_least=0.0)[mine] >= 0.2
