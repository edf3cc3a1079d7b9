"""Decode-step time of the meta-reference engine, before and after an engine change, on a shared machine.

Each trial is a fresh process that loads a checkpoint from one source tree (this repository, or `--baseline-src`,
e.g. `git archive REV | tar -x -C DIR`), prefills `batch` random 128-token prompts and times single decode steps
(`engine.step()`, schedule + forward + sampling + postprocess). Trees alternate trial by trial. A box other
people load makes single timings noisy, so it reports the minimum and quartiles of the step times and the load
average: the minimum is the step with the least interference.

    git archive 5901c7c | tar -x -C /tmp/base
    python benchmarks/decode_step_bench.py --baseline-src /tmp/base --batches 8 32 --trials 3 \\
        --out benchmarks/results/decode_step_cpu
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = Path("~/.cache/stackserve/models/SmolLM2-135M-Instruct.Q4_1").expanduser()


async def worker(model_dir: Path, batch: int, steps: int, threads: int | None) -> dict:
    sys.path.insert(0, os.getcwd())  # the tree under test (the orchestrator runs each worker from its root)
    from deployments.inference.engine import EngineRequest
    from deployments.inference.meta_reference.engine import MetaReferenceEngine
    from deployments.inference.meta_reference.scheduler import Sequence
    from deployments.inference.sampling import SamplingParams
    from serve.config import MetaReferenceEngineConfig as EngineConfig

    cfg = EngineConfig(max_num_seqs=batch, kv_cache_tokens=batch * 400, num_threads=threads)
    engine = MetaReferenceEngine.from_checkpoint(model_dir, cfg)
    rng = random.Random(0)
    for i in range(batch):
        params = SamplingParams(max_tokens=steps + 10, temperature=0.0, ignore_eos=True)
        prompt = [rng.randrange(100, engine.vocab_size - 100) for _ in range(128)]
        engine.scheduler.waiting.append(Sequence(EngineRequest(str(i), prompt, params), params.make_generator()))
    t = time.perf_counter()
    await engine.step()  # prefill
    prefill_s = time.perf_counter() - t
    for _ in range(3):
        await engine.step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        await engine.step()
        times.append(time.perf_counter() - t)
    q = statistics.quantiles(times, n=4)
    return {"batch": batch, "steps": steps, "prefill_s": prefill_s, "min_ms": 1000 * min(times),
            "p25_ms": 1000 * q[0], "median_ms": 1000 * q[1], "tok_s_at_min": batch / min(times),
            "tok_s_at_median": batch / q[1]}


def run_trial(src: Path, a: argparse.Namespace, batch: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", str(a.model), "--steps",
           str(a.steps), "--batches", str(batch)] + (["--threads", str(a.threads)] if a.threads else [])
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=src, timeout=a.timeout,
                          env={**os.environ, "PYTHONPATH": str(src)})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr or proc.stdout)[-1500:], "loadavg_1m_before": load}
    return json.loads(lines[-1][7:]) | {"loadavg_1m_before": load}


def markdown(rows: dict, meta: dict) -> str:
    out = [f"# Decode step, meta-reference before/after ({meta['model']}, fp32)", "",
           f"Date {meta['date']}, commit {meta['commit']}, base {meta['baseline_src']}, torch threads "
           f"{meta['threads'] or meta['cpus']}. Command: `{meta['command']}`",
           "", "| tree | batch | trials | step min ms | step p25 ms | step median ms | tok/s at min | after/before "
           "(min) | load 1m |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b in meta["batches"]:
        base = min((r["min_ms"] for r in rows["base"].get(str(b), []) if "error" not in r), default=None)
        for tree in ("base", "ours"):
            ok = [r for r in rows[tree].get(str(b), []) if "error" not in r]
            if not ok:
                out.append(f"| {tree} | {b} | failed: see JSON | | | | | | |")
                continue
            mn = min(r["min_ms"] for r in ok)
            p25 = statistics.median(r["p25_ms"] for r in ok)
            med = statistics.median(r["median_ms"] for r in ok)
            ratio = f"{base / mn:.2f}x" if base else "-"
            loads = ", ".join(f"{r['loadavg_1m_before']:.1f}" for r in ok)
            out.append(f"| {tree} | {b} | {len(ok)} | {mn:.1f} | {p25:.1f} | {med:.1f} | {b / mn * 1000:.0f} | "
                       f"{ratio} | {loads} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--baseline-src", type=Path)
    p.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per engine (default: all cores; 1 avoids OpenMP stragglers on a loaded box)")
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/decode_step_cpu")
    a = p.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(asyncio.run(worker(a.model, a.batches[0], a.steps, a.threads))), flush=True)
        return
    if a.baseline_src is None:
        p.error("--baseline-src is required")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    meta = {"model": a.model.name, "batches": a.batches, "steps": a.steps, "trials": a.trials,
            "baseline_src": str(a.baseline_src), "commit": commit.stdout.strip(), "command": " ".join(sys.argv),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(), "threads": a.threads}
    rows: dict = {"base": {}, "ours": {}}
    for trial in range(a.trials):
        for b in a.batches:
            for tree, src in (("base", a.baseline_src.resolve()), ("ours", ROOT)):
                r = run_trial(src, a, b)
                rows[tree].setdefault(str(b), []).append(r)
                print(f"trial {trial + 1} {tree} batch {b}: " + (f"min {r['min_ms']:.1f} ms, median "
                      f"{r['median_ms']:.1f} ms" if "error" not in r else "FAILED " + r["error"][-300:]), flush=True)
                a.out.parent.mkdir(parents=True, exist_ok=True)
                a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
                a.out.with_suffix(".md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
