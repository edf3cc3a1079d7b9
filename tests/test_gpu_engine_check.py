"""benchmarks/gpu_engine_check.py runs where no GPU is: its tiny CPU smoke mode goes through the same code as the
H200 run (both engines, the token comparison, the JSON), so the script a lent GPU gets in one call still works."""

from __future__ import annotations

import argparse
import asyncio
import json

from benchmarks.gpu_engine_check import main_async


def test_tiny_cpu_smoke_run():
    a = argparse.Namespace(tiny=True, device="cpu", dtype="float32", batches=[1, 3], prompt_len=8, output_len=4,
                           profile=0)
    result = asyncio.run(main_async(a))
    json.dumps(result, default=str)  # what the script saves
    assert [r["batch"] for r in result["eager"]["runs"]] == [1, 3]
    assert [r["batch"] for r in result["graphs"]["runs"]] == [1, 3]
    assert all(e["equal"] for e in result["graphs_equal_eager"])  # padded decode gives eager's greedy tokens
    assert result["graphs"]["graphs_captured"] == 0  # no CUDA graphs on CPU
    assert set(result["graphs_speedup"]) == {"1", "3"}
