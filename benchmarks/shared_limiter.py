"""What `server.limits_scope: shared` adds per request: the latency of one acquire against the application's limiter
actor (serve/shared_limits.py), next to the in-process limiter of `replica` scope, at c=1 and c=32 concurrent
callers in one process (one ingress replica's event loop). Release is fire-and-forget and not on the path.

    RAY_TMPDIR=/tmp/rt python -m benchmarks.shared_limiter --calls 2000 --out benchmarks/results/shared-limiter.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from benchmarks.sysinfo import hardware, load_average, software
from serve.config.server import RateLimitConfig
from serve.principal import Principal
from serve.shared_limits import ReplicaLimiter, SharedLimiter


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def measure(limiter, principal: Principal, calls: int, concurrency: int) -> dict[str, float]:
    """`calls` acquires spread over `concurrency` tasks; per-acquire latency in ms and acquires per second."""
    lat: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            t = time.perf_counter()
            counted = await limiter.acquire(principal)
            lat.append((time.perf_counter() - t) * 1e3)
            if counted:
                limiter.release(principal)

    start = time.perf_counter()
    await asyncio.gather(*[worker(calls // concurrency) for _ in range(concurrency)])
    wall = time.perf_counter() - start
    return {"p50": statistics.median(lat), "p99": pct(lat, 0.99), "mean": statistics.fmean(lat),
            "per_s": len(lat) / wall}


async def run(calls: int, concurrencies: list[int]) -> list[tuple[str, int, dict[str, float]]]:
    # limits high enough that nothing is refused: the cost measured is counting, not 429s
    principal = Principal("bench", limits=RateLimitConfig(requests_per_minute=10**9, max_concurrent_requests=10**6))
    shared = SharedLimiter("bench")
    await measure(shared, principal, 200, 1)  # warm-up: the actor starts, the worker connects
    rows = []
    for c in concurrencies:
        for name, limiter in (("replica", ReplicaLimiter()), ("shared", shared)):
            rows.append((name, c, await measure(limiter, principal, calls, c)))
    return rows


def report(rows, calls: int, command: str) -> str:
    hw, sw = hardware(), software()
    lines = ["# Shared limiter: added latency per request (acquire)", "",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Commit: {sw['git']['commit']}"
             f"{' (dirty)' if sw['git']['dirty'] else ''}. Hardware: {hw['cpu_model']}, {hw['usable_cores']} cores, "
             f"{hw['memory_gib']} GiB, GPUs: {', '.join(hw['gpus']) or 'none'}. Ray {sw['packages'].get('ray')}, "
             f"Python {sw['python']}. Load average after the run: {load_average()}.",
             f"Command: `{command}` ({calls} acquires per cell, one process, local Ray).", "",
             "| scope | c | acquire p50 ms | p99 ms | mean ms | acquires/s |", "| --- | --- | --- | --- | --- | --- |"]
    for name, c, r in rows:
        lines.append(f"| {name} | {c} | {r['p50']:.3f} | {r['p99']:.3f} | {r['mean']:.3f} | {r['per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        rows = asyncio.run(run(args.calls, [int(c) for c in args.concurrency.split(",")]))
    finally:
        ray.shutdown()
    text = report(rows, args.calls, "python -m benchmarks.shared_limiter " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items() if v is not None))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
