"""A short real run of the load generator against the SmolLM2 graph (5 requests): usage-based token counts, exact
output lengths with ignore_eos, every streamed metric measured."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.bench import BenchConfig, run_sweep
from benchmarks.workloads import parse_workload

pytestmark = pytest.mark.graph


def test_bench_against_the_graph(base_url, smollm2_dir):
    cfg = BenchConfig(base_url=f"{base_url}/v1", workloads=[parse_workload("fixed:32:8")], concurrency=[2],
                      num_requests=5, warmup_requests=1, max_time_s=240, tokenizer=str(smollm2_dir),
                      slos_ms={"e2e": 600_000}, progress=False)
    records, rows = asyncio.run(run_sweep(cfg, log=lambda s: None))
    (rec,) = records
    m = rec["metrics"]
    assert rec["config"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert m["completed"] == 5 and m["failed"] == 0
    assert m["token_source"] == {"usage": 5}
    assert m["mean_output_tokens"] == 8  # ignore_eos: exactly max_tokens
    assert m["mean_input_tokens"] > 32  # the chat template adds its tokens to the 32-token prompt
    assert m["ttft_ms"]["n"] == 5 and m["itl_ms"]["n"] > 0 and m["tpot_ms"]["p50"] > 0
    assert m["goodput"]["good_requests"] == 5
    assert len(rows) == 5 and rec["server"]["model"]["metadata"]["engine"] == "meta-reference"
