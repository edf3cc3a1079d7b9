"""Telemetry overhead on chat throughput: the same graph with telemetry off, metrics only, and full tracing.

One local Ray; each setting is deployed in turn (an LLM deployment behind the ingress) and loaded through HTTP with
streamed chat completions at a fixed concurrency (closed loop). Settings alternate within a round and the order
reverses each round (A B C, C B A, ...) so drift on a shared machine falls on all of them alike.

    off       telemetry.tracing false, telemetry.metrics false
    metrics   the default: Ray metrics (TTFT, inter-token latency, tokens, engine gauges), no tracing
    tracing   tracing on, every span stored in the SQL span store (sqlite in a temporary data dir), plus metrics

Engines: `scripted` answers instantly (tests/scripted_engine.py injected through the graph builder: the serving path
with no model, the worst case for per-request and per-token overhead); `smollm2` is SmolLM2-135M on the
meta-reference engine (what a request costs for real).

    python -m benchmarks.telemetry_overhead --engine scripted,smollm2 --concurrency 1,16 --duration 20 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import sysinfo  # noqa: E402
from benchmarks.ingress_overhead import free_port, wait_http  # noqa: E402
from benchmarks.load import LoadGenerator, LoadSpec  # noqa: E402
from benchmarks.scenarios import ChatScenario, RequestOptions  # noqa: E402
from benchmarks.workloads import WorkItem  # noqa: E402

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SETTINGS = {
    "off": {"tracing": False, "metrics": False},
    "metrics": {"tracing": False, "metrics": True},
    "tracing": {"tracing": True, "metrics": True},
}
PROMPT = "Tell me a long story about a lighthouse keeper and the sea, with many details."
REPLY = " ".join(["the keeper climbed the stairs and lit the lamp"] * 8)  # scripted: ~80 tokens, cut at max_tokens


def stack_config(engine: str, setting: str, data_dir: str):
    from serve.config import parse_config

    eng: dict[str, Any] = {"max_num_seqs": 32, "max_model_len": 2048, "kv_cache_tokens": 32768}
    return parse_config({
        "data_dir": data_dir,
        "ingress": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.1}},
        "models": [{"model_id": SMOLLM2, "source": SMOLLM2, "engine": eng,
                    "deployment": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.5}}}],
        "telemetry": SETTINGS[setting],
    })


async def load(base_url: str, concurrency: int, duration_s: float, output_tokens: int, warmup: int) -> dict:
    gen = LoadGenerator(f"{base_url}/v1/chat/completions", ChatScenario(),
                        RequestOptions(model=SMOLLM2, stream=True, ignore_eos=True, temperature=0.0))
    item = WorkItem(PROMPT, 20, output_tokens)
    spec = LoadSpec("concurrency", concurrency, duration_s=duration_s, warmup_requests=warmup,
                    max_time_s=duration_s + 300, request_timeout_s=300)
    out = await gen.run(spec, [item], [item])
    ok = [r for r in out.results if r.ok]
    tokens = sum((r.usage or {}).get("completion_tokens", 0) for r in ok)  # streamed with include_usage
    return {"requests": len(out.results), "errors": len(out.results) - len(ok),
            "req_per_s": len(ok) / out.duration_s, "out_tok_per_s": tokens / out.duration_s,
            "ttft_p50_ms": 1000 * statistics.median([r.ttft for r in ok if r.ttft is not None] or [float("nan")]),
            "e2e_p50_ms": 1000 * statistics.median([r.e2e for r in ok] or [float("nan")])}


def engines(engine: str) -> dict[str, Any] | None:
    """The engine factories to inject: the scripted engine in place of SmolLM2's for `scripted`."""
    if engine != "scripted":
        return None
    from tests.scripted_engine import ScriptedEngineFactory, shipped

    return {SMOLLM2: shipped(ScriptedEngineFactory([{"reply": REPLY}]))}


def measure(a: argparse.Namespace, log=print) -> list[dict[str, Any]]:
    import ray
    from ray import serve

    from serve.graph import build_graph

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ray.init(address="local", num_cpus=a.ray_cpus, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    records: list[dict[str, Any]] = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for engine in a.engine:
            order = list(a.settings)
            for rnd in range(a.rounds):
                for setting in order if rnd % 2 == 0 else reversed(order):
                    with tempfile.TemporaryDirectory(prefix="stackserve-bench-") as data_dir:
                        serve.run(build_graph(stack_config(engine, setting, data_dir), engines(engine)),
                                  name="telemetry-bench", route_prefix="/")
                        asyncio.run(wait_http(f"{base}/v1/models", 120))
                        for c in a.concurrency:
                            t0 = time.time()
                            rec = asyncio.run(load(base, c, a.duration, a.output_tokens, a.warmup))
                            rec |= {"engine": engine, "setting": setting, "round": rnd, "concurrency": c,
                                    "started": t0, "load_average": sysinfo.load_average()}
                            records.append(rec)
                            log(f"{engine:<8} {setting:<8} round {rnd} c={c:<3} {rec['req_per_s']:7.2f} req/s "
                                f"{rec['out_tok_per_s']:8.1f} tok/s  TTFT p50 {rec['ttft_p50_ms']:7.1f} ms  "
                                f"e2e p50 {rec['e2e_p50_ms']:8.1f} ms  errors {rec['errors']}")
                        serve.delete("telemetry-bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    return records


def usable(records: list[dict[str, Any]], max_load: float | None) -> tuple[list[dict], list[dict]]:
    """Cells measured while the machine's 1-minute load average exceeded `max_load` (other work on a shared box)
    are set aside, not averaged in."""
    if max_load is None:
        return records, []
    return ([r for r in records if (r.get("load_average") or 0) <= max_load],
            [r for r in records if (r.get("load_average") or 0) > max_load])


def summary(records: list[dict[str, Any]], settings: list[str]) -> list[dict[str, Any]]:
    """Mean over rounds per (engine, concurrency, setting), with the throughput ratio to `off` (every request
    asks for the same number of output tokens, so req/s and tok/s ratios are the same)."""
    rows = []
    for engine in dict.fromkeys(r["engine"] for r in records):
        for c in dict.fromkeys(r["concurrency"] for r in records):
            cells = {s: [r for r in records if (r["engine"], r["concurrency"], r["setting"]) == (engine, c, s)]
                     for s in settings}
            base = statistics.mean(r["req_per_s"] for r in cells["off"]) if cells.get("off") else None
            for s, rs in cells.items():
                if not rs:
                    continue
                rps = statistics.mean(r["req_per_s"] for r in rs)
                rows.append({"engine": engine, "concurrency": c, "setting": s, "rounds": len(rs), "req_per_s": rps,
                             "out_tok_per_s": statistics.mean(r["out_tok_per_s"] for r in rs),
                             "ttft_p50_ms": statistics.mean(r["ttft_p50_ms"] for r in rs),
                             "e2e_p50_ms": statistics.mean(r["e2e_p50_ms"] for r in rs),
                             "vs_off": rps / base if base else None,
                             "spread": (max(r["req_per_s"] for r in rs) - min(r["req_per_s"] for r in rs)) / rps})
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any], dropped: list[dict[str, Any]] = ()) -> str:
    hw = meta["hardware"]
    lines = [f"# Telemetry overhead on chat throughput ({meta['config']['output_tokens']} output tokens, streamed)",
             "", f"Hardware: {hw.get('cpu_model')}, {hw.get('usable_cores')} cores, {hw.get('memory_gib')} GiB, "
             f"GPUs: {', '.join(hw.get('gpus') or []) or 'none'}. Command: `{meta['command']}`.", "",
             "| engine | c | setting | req/s | out tok/s | vs off | TTFT p50 ms | e2e p50 ms | spread |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        vs = f"{r['vs_off']:.3f}x" if r["vs_off"] is not None else ""
        tok = f"{r['out_tok_per_s']:.1f}" if r["out_tok_per_s"] else "-"
        lines.append(f"| {r['engine']} | {r['concurrency']} | {r['setting']} | {r['req_per_s']:.2f} | {tok} | {vs} | "
                     f"{r['ttft_p50_ms']:.1f} | {r['e2e_p50_ms']:.1f} | {100 * r['spread']:.1f}% |")
    lines += ["", "`vs off`: req/s relative to `off` at the same engine and concurrency (each request generates the "
              "same number of tokens); `spread`: (max - min) / mean of req/s over the rounds, the noise floor."]
    if dropped:
        lines += ["", f"Set aside (load average above {meta.get('max_load')}): " + "; ".join(
            f"{r['engine']} {r['setting']} round {r['round']} c={r['concurrency']} ({r['req_per_s']:.2f} req/s, "
            f"load {r['load_average']})" for r in dropped) + "."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.telemetry_overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    def words(s: str) -> list[str]:
        return [x for x in s.split(",") if x]

    p.add_argument("--engine", type=words, default=["scripted", "smollm2"])
    p.add_argument("--settings", type=words, default=list(SETTINGS))
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured per cell")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--output-tokens", type=int, default=32)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--ray-cpus", type=int, default=2)
    p.add_argument("--max-load", type=float, default=None,
                   help="set aside cells measured at a higher 1-minute load average (a disturbed shared machine)")
    p.add_argument("--from-json", type=Path, default=None, help="re-summarize a run's OUT.json into OUT.md")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/telemetry_overhead_cpu"),
                   help="writes OUT.json and OUT.md")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.from_json:  # summarize the records of an earlier run again
        saved = json.loads(a.from_json.read_text())
        kept, dropped = usable(saved["records"], a.max_load)
        saved |= {"max_load": a.max_load, "summary": summary(kept, saved["config"]["settings"])}
        a.from_json.write_text(json.dumps(saved, indent=1, default=str))
        md = markdown(saved["summary"], saved, dropped)
        a.from_json.with_suffix(".md").write_text(md)
        print(md)
        return 0
    unknown = set(a.settings) - set(SETTINGS) | set(a.engine) - {"scripted", "smollm2"}
    if unknown:
        raise SystemExit(f"unknown engine or setting: {', '.join(sorted(unknown))}")
    records = measure(a)
    kept, dropped = usable(records, a.max_load)
    rows = summary(kept, a.settings)
    meta = {"config": vars(a) | {"out": str(a.out)}, "command": " ".join(["python -m benchmarks.telemetry_overhead",
                                                                          *(argv or sys.argv[1:])]),
            "hardware": sysinfo.hardware(), "software": sysinfo.software(), "max_load": a.max_load}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps({**meta, "summary": rows, "records": records}, indent=1,
                                                     default=str))
    md = markdown(rows, meta, dropped)
    a.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
