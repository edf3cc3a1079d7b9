"""Cache-aware routing vs Ray Serve's default router and Ray Serve LLM's: two replicas of SmolLM2, multi-turn chat.

One Ray; the same graph (ingress + one LLM deployment of 2 replicas) deployed with each `routing.policy` in turn:
prefix_aware (ours), power_of_two (Serve's default) and ray_prefix_cache (Ray Serve LLM's PrefixCacheAffinityRouter),
one application at a time (four SmolLM2 replicas at once did not fit this box's memory). Repetition k runs the same
workload (the same prompts: seed k) against each. The prompts carry no session key: the prefix routers must find
each user's replica from the prompt alone (a `prompt_cache_key` would pin it). Reports output tokens/s, TTFT p50
and the share of prompt tokens the engines found cached, per rep and as medians with each policy's ratio to
power_of_two.

    python benchmarks/routing_bench.py --output benchmarks/results/routing-<date>.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
POLICIES = ("prefix_aware", "power_of_two", "ray_prefix_cache")
MODEL_CACHE = Path(os.environ.get("STACKSERVE_MODEL_CACHE", "~/.cache/stackserve/models")).expanduser()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_config(policy: str, a: argparse.Namespace):
    from serve.config import parse_config

    return parse_config({
        "model_cache_dir": str(MODEL_CACHE),
        "ingress": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.05}},
        "models": [{
            "model_id": SMOLLM2, "source": SMOLLM2, "routing": {"policy": policy, "max_imbalance": a.max_imbalance},
            "engine": {"max_num_seqs": a.users, "max_model_len": a.max_model_len,
                       "kv_cache_tokens": a.kv_cache_tokens, "num_threads": a.engine_threads},
            "deployment": {"num_replicas": 2, "max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 0.05}},
        }],
    })


def start() -> str:
    """Ray and Serve on this machine; the HTTP base URL."""
    import ray
    from ray import serve

    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="routing-bench-"))
    port = _free_port()
    ray.init(include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def runs_of(base: str, policy: str, a: argparse.Namespace) -> list[dict]:
    """Deploy the graph with `policy`, run every repetition against it, delete it."""
    from ray import serve

    from serve.graph import build_graph

    t = time.time()
    serve.run(build_graph(stack_config(policy, a)), name=policy, route_prefix=f"/{policy}")
    print(f"deployed {policy} in {time.time() - t:.0f}s", flush=True)
    try:
        return [asyncio.run(one_run(base, policy, rep, a)) for rep in range(1, a.reps + 1)]
    finally:
        serve.delete(policy)


async def one_run(base: str, policy: str, seed: int, a: argparse.Namespace) -> dict:
    from benchmarks.bench import BenchConfig, run_sweep
    from benchmarks.workloads import DEFAULT_TOKENIZER, parse_workload

    cfg = BenchConfig(base_url=f"{base}/{policy}/v1", model=SMOLLM2, label=policy,
                      workloads=[parse_workload(f"multiturn:{a.first}:{a.turn}:{a.out}:{a.users}")],
                      concurrency=[a.users], num_requests=a.users * a.turns, warmup_requests=1, seed=seed,
                      max_time_s=a.max_run_s, tokenizer=a.tokenizer or DEFAULT_TOKENIZER, progress=False)
    records, _ = await run_sweep(cfg, log=lambda line: print(f"  {line}", flush=True))
    m = records[0]["metrics"]
    return {"policy": policy, "seed": seed, "output_tps": m["output_throughput"], "ttft_p50": m["ttft_ms"]["p50"],
            "cached_share": m["cached_token_share"] or 0.0, "failed": m["failed"], "completed": m["completed"]}


def report(rows: list[dict], a: argparse.Namespace, started: str, wall_s: float) -> str:
    from benchmarks.sysinfo import hardware, load_average, software

    hw, sw = hardware(), software()

    def med(policy: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["policy"] == policy)

    medians = {p: {k: med(p, k) for k in ("output_tps", "ttft_p50", "cached_share")} for p in a.policies}
    base = medians.get("power_of_two")
    lines = [
        f"# Cache-aware routing: {', '.join(a.policies)} (two LLM replicas, multi-turn chat)", "",
        f"- date: {started}; wall time {wall_s / 60:.1f} min",
        f"- commit: {sw['git']['commit']} (dirty: {sw['git']['dirty']})",
        f"- hardware: {hw['cpu_model']}, {hw['usable_cores']} usable cores, {hw['memory_gib']} GiB; load average "
        f"after the run {load_average()}",
        f"- software: python {sw['python']}, ray {sw['packages'].get('ray')}, torch {sw['packages'].get('torch')}",
        f"- graph: ingress + SmolLM2-135M-Instruct (meta-reference, fp32, CPU) on 2 replicas, max_num_seqs "
        f"{a.users}, prefix caching on, KV cache {a.kv_cache_tokens} tokens and {a.engine_threads} torch thread(s) per "
        f"replica, routing.max_imbalance {a.max_imbalance or 'default'}; deployed with one policy at a time (memory)",
        f"- workload: `multiturn:{a.first}:{a.turn}:{a.out}:{a.users}`: {a.users} users x {a.turns} turns, closed "
        f"loop at concurrency {a.users}; a {a.first}-token first prompt, each turn adds the previous answer "
        f"({a.out} tokens) and a {a.turn}-token question; {a.out} output tokens (ignore_eos), greedy; no session "
        "key (the prefix routers route on the prompt alone); 1 warm-up request per run",
        f"- command: `python benchmarks/routing_bench.py {' '.join(sys.argv[1:])}`",
        "",
        "| rep | policy | output tok/s | TTFT p50 (ms) | cached prompt tokens | failed |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['policy']} | {r['output_tps']:.1f} | {r['ttft_p50']:.0f} | "
                     f"{r['cached_share']:.0%} | {r['failed']} |")
    lines += ["", "| median over reps | output tok/s | TTFT p50 (ms) | cached prompt tokens | tok/s vs power_of_two "
              "| TTFT p50 vs power_of_two |", "|---|---|---|---|---|---|"]
    for p, m in medians.items():
        vs = (f"{m['output_tps'] / base['output_tps']:.2f}x | {base['ttft_p50'] / m['ttft_p50']:.2f}x lower"
              if base else "- | -")
        lines.append(f"| {p} | {m['output_tps']:.1f} | {m['ttft_p50']:.0f} | {m['cached_share']:.0%} | {vs} |")
    lines += ["", "Issue 18's target: prefix_aware >= 1.3x power_of_two's output throughput or >= 2x lower TTFT p50 "
              "at the same load."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--first", type=int, default=1024, help="tokens of each user's first prompt")
    p.add_argument("--turn", type=int, default=32, help="tokens of each later question")
    p.add_argument("--out", type=int, default=16, help="output tokens per request (and per stand-in answer)")
    p.add_argument("--kv-cache-tokens", type=int, default=8192, help="per replica")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--max-imbalance", type=int, default=None,
                   help="routing.max_imbalance of the prefix policies (default: the config's, max_num_seqs)")
    p.add_argument("--engine-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="torch threads per replica (default: half the cores each, so the two do not oversubscribe)")
    p.add_argument("--policies", type=lambda v: tuple(v.split(",")), default=POLICIES,
                   help=f"comma-separated, run in this order (default {','.join(POLICIES)})")
    p.add_argument("--max-run-s", type=float, default=300.0, help="hard bound on one run")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--output", type=Path, default=None, help="markdown file to write")
    a = p.parse_args(argv)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.time()
    base = start()
    rows = [row for policy in a.policies for row in runs_of(base, policy, a)]
    text = report(rows, a, started, time.time() - t0)
    print(text)
    if a.output:
        a.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
