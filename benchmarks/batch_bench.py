"""Batch inference throughput, three ways, side by side in one run (requests drawn alike, same engine settings):

  (a) the Batch API: one batch of N requests through the running graph (files + /v1/batches, Ray Data UDFs
      calling the LLM deployment's handle);
  (b) the offline CLI: `stackserve batch run` on a JSONL of N such requests (Ray Data, engine inside the UDF actor,
      no Serve);
  (c) online: N such requests sent to /v1/chat/completions at concurrency 32 by the bench suite's load generator
      (not streamed: like a batch, the whole answer at once).

Each path has its own prompts (same lengths, another seed), so that no path reads another's from the engine's
prefix cache; the server's engine is warmed up with a fourth set before the measured paths.

Output tokens/s end to end (start to last result: includes job start-up, and for (b) Ray start + model load) and
steady state (between 10% and 90% of the requests done), so start-up costs and the engine rate are both visible.

    python benchmarks/batch_bench.py --requests 1000 --max-tokens 16 --out benchmarks/results/batch_bench_cpu
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.server_process import stop_server  # noqa: E402
from benchmarks.sysinfo import (  # noqa: E402
    cpu_seconds_between,
    hardware,
    load_average,
    process_cpu_seconds,
    software,
)
from deployments.batches.offline import steady_rate  # noqa: E402

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def bench_config(data_dir: str, port: int) -> dict:
    """configs/local.yaml's SmolLM2 engine and deployment, plus the files store and the Batches deployment."""
    from serve.config import load_config

    local = load_config(ROOT / "configs" / "local.yaml")
    llm = local.models[0].model_dump(exclude_unset=True)  # what the file says; defaults stay defaults
    return {"data_dir": data_dir, "server": {"port": port},
            "ingress": local.ingress.model_dump(exclude_unset=True), "models": [llm],
            "embedding_models": [{"model_id": MINILM, "source": MINILM,
                                  "deployment": {"ray_actor_options": {"num_cpus": 0.1}}}],
            "vector_io": {"deployment": {"ray_actor_options": {"num_cpus": 0.1}}},
            "batches": {"deployment": {"ray_actor_options": {"num_cpus": 0.1}}}}


def make_requests(n: int, input_tokens: int, max_tokens: int, seed: int) -> tuple[list, list[dict]]:
    from benchmarks.scenarios import ChatScenario, RequestOptions
    from benchmarks.workloads import PromptMaker, generate, load_tokenizer, parse_workload
    from deployments.inference.model_store import resolve_checkpoint

    tok = load_tokenizer(resolve_checkpoint(SMOLLM2, Path("~/.cache/stackserve/models").expanduser()))
    items = generate(parse_workload(f"fixed:{input_tokens}:{max_tokens}"), n, PromptMaker(tok), seed)
    opts = RequestOptions(model=SMOLLM2, stream=False)
    lines = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": ChatScenario().payload(item, opts)} for i, item in enumerate(items)]
    return items, lines


def start_server(cfg: dict, data_dir: Path) -> subprocess.Popen:
    path = data_dir / "bench.yaml"
    log = open(data_dir / "server.log", "w")  # a file, not a pipe: an unread pipe blocks the server
    proc = subprocess.Popen([sys.executable, "-m", "serve.cli", "run", "--config", str(path)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{cfg['server']['port']}"
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            r = httpx.post(f"{base}/v1/chat/completions", timeout=30, json={
                "model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
            if r.status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError((data_dir / "server.log").read_text()[-3000:])
        time.sleep(2)
    raise TimeoutError("the server did not come up")


class LoadSampler:
    """The 1-minute load average every few seconds during one phase, and the CPU seconds each process used in it:
    on a shared 2-core box other work takes CPU from the engine, and the paths differ in what runs beside the
    engine (Ray Data's actors for (a) and (b), the ingress for (c)), so where the machine's CPU went belongs in the
    record."""

    def __init__(self, every_s: float = 5.0):
        import threading

        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.loads.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._cpu0, self._t0 = process_cpu_seconds(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        self._wall = time.perf_counter() - self._t0
        self.cpu = cpu_seconds_between(self._cpu0, process_cpu_seconds())

    def record(self) -> dict:
        return {"mean_load_1m": round(sum(self.loads) / len(self.loads), 2) if self.loads else None,
                "cpu_seconds_available": round(self._wall * (os.cpu_count() or 1), 1),
                "cpu_seconds_by_process": self.cpu}


def measured(fn, *args) -> dict:
    with LoadSampler() as sampler:
        result = fn(*args)
    return {**result, "machine": sampler.record()}


def rates(tokens: int, wall: float, samples: list[tuple[float, int, int]], total: int, in_flight: int = 1) -> dict:
    steady = steady_rate(samples, total, in_flight)
    return {"output_tokens": tokens, "wall_s": round(wall, 2), "output_tokens_per_s": round(tokens / wall, 2),
            "steady_output_tokens_per_s": round(steady, 2) if steady is not None else None}


def run_online(base: str, items: list, concurrency: int) -> dict:
    from benchmarks.load import LoadGenerator, LoadSpec
    from benchmarks.metrics import resolve_tokens
    from benchmarks.scenarios import ChatScenario, RequestOptions

    gen = LoadGenerator(f"{base}/v1/chat/completions", ChatScenario(), RequestOptions(model=SMOLLM2, stream=False))
    t0 = time.perf_counter()
    out = asyncio.run(gen.run(LoadSpec("concurrency", concurrency, num_requests=len(items), max_time_s=3600,
                                       request_timeout_s=1200), items))
    wall = time.perf_counter() - t0
    resolve_tokens(out.results, None)  # from the server's usage
    ok = sorted((r for r in out.results if r.ok), key=lambda r: r.end)
    samples, tokens = [], 0
    for i, r in enumerate(ok, start=1):
        tokens += r.output_tokens or 0
        samples.append((r.end, i, tokens))
    return {"concurrency": concurrency, "requests": len(out.results), "failed": len(out.results) - len(ok),
            **rates(tokens, wall, samples, len(items), concurrency)}


def run_batch_api(base: str, lines: list[dict]) -> dict:
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=600)
    data = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
    fid = client.files.create(file=("bench.jsonl", data), purpose="batch").id
    t0 = time.perf_counter()
    batch = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h")
    samples = []
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
        counts = batch.request_counts
        samples.append((time.perf_counter(), counts.completed + counts.failed, batch.usage.output_tokens))
    wall = time.perf_counter() - t0
    return {"status": batch.status, "requests": counts.total, "failed": counts.failed,
            **rates(batch.usage.output_tokens, wall, samples, len(lines))}


def run_cli(path: Path, out: Path, data_dir: Path, *extra: str) -> dict:
    cfg = data_dir / "bench.yaml"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "serve.cli", "batch", "run", str(path), "-o", str(out), "--model",
                           SMOLLM2, "--config", str(cfg), "--no-progress", *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    s = json.loads(proc.stdout[proc.stdout.index("{"):])
    return {"requests": s["requests"], "failed": s["failed"], "job_s": s["elapsed_s"],
            "first_result_s": s["first_result_s"], "job_output_tokens_per_s": s["output_tokens_per_s"],
            **rates(s["output_tokens"], wall, [], 0), "steady_output_tokens_per_s": s["steady_output_tokens_per_s"],
            "peak_in_flight": s["peak_in_flight"]}


def _offline(res: dict, data_dir: Path) -> None:
    print("offline CLI ...", flush=True)
    res["offline_cli"] = measured(run_cli, data_dir / "in.jsonl", data_dir / "out.jsonl", data_dir)
    print(res["offline_cli"], flush=True)


def report(res: dict) -> str:
    rows = [("(a) Batch API (graph, Ray Data -> LLM handle)", res["batch_api"]),
            ("(b) offline CLI (Ray Data, engine in the UDF actor)", res["offline_cli"]),
            *([("(b') offline CLI, engine actor reserving 0.1 CPU", res["offline_cli_0.1cpu"])]
              if "offline_cli_0.1cpu" in res else []),
            (f"(c) online, concurrency {res['online']['concurrency']}, not streamed", res["online"])]
    c = res["online"]
    out = [f"# Batch inference: {res['requests']} requests, {res['input_tokens']} prompt tokens, "
           f"{res['max_tokens']} output tokens each (SmolLM2-135M fp32)", "",
           f"Hardware: {res['hardware']['cpu_model']}, {res['hardware']['usable_cores']} cores, "
           f"{res['hardware']['memory_gib']} GiB; load average before/after: {res['load_before']} / "
           f"{res['load_after']}", "",
           "| path | wall s | output tok/s (end to end) | steady tok/s | vs (c) end to end | vs (c) steady | failed "
           "| mean load |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows:
        steady = r.get("steady_output_tokens_per_s")
        out.append(f"| {name} | {r['wall_s']} | {r['output_tokens_per_s']} | {steady} | "
                   f"{r['output_tokens_per_s'] / c['output_tokens_per_s']:.2f}x | "
                   f"{(steady or 0) / c['steady_output_tokens_per_s']:.2f}x | {r['failed']} | "
                   f"{r['machine']['mean_load_1m']} |")
    b = res["offline_cli"]
    out += ["", f"(b) end to end includes starting Ray and loading the model in the UDF actor; its job alone took "
            f"{b['job_s']} s ({b['job_output_tokens_per_s']} tok/s), the first results after {b['first_result_s']} s; "
            f"at most {b['peak_in_flight']} requests were in flight in its UDF actor.",
            "Steady state: output tokens/s between 10% and 90% of the requests done (no start-up, no tail).",
            f"Order: {res['order']}; the server's engine was warmed up by {4 * c['concurrency']} online requests "
            "first. Mean load: the 1-minute load average during the path (the engine alone keeps it near 2; more is "
            "other work on the machine).", "",
            "Where the machine's CPU went during each path (CPU seconds by process, of the cores x wall available):",
            ""]
    for name, r in rows:
        m = r["machine"]
        top = ", ".join(f"{p} {s}" for p, s in list(m["cpu_seconds_by_process"].items())[:8])
        out.append(f"- {name}: {m['cpu_seconds_available']} available; {top}")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--input-tokens", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--order", default="b,c,a", choices=["b,c,a", "b,a,c", "a,c,b", "c,a,b"],
                    help="run order of the paths (the server runs (a) and (c) back to back)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "batch_bench_cpu")
    a = ap.parse_args()
    if not a.port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            a.port = sock.getsockname()[1]
    # each path (and the warm-up) gets its own prompts, drawn alike: with the same prompts, whichever path ran later
    # read them from the engine's prefix cache (measured in two runs: the server's engine spent 155-156 CPU s on
    # the 1,000 requests of the path that ran first and 95-120 on the same requests in the path that ran second)
    requests = {path: make_requests(a.requests, a.input_tokens, a.max_tokens, a.seed + i)
                for i, path in enumerate(("a", "b", "c", "warm-up"))}
    res: dict = {"order": a.order, "requests": a.requests, "input_tokens": a.input_tokens, "max_tokens": a.max_tokens,
                 "hardware": hardware(), "software": software(), "load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        data_dir = Path(tmp)
        (data_dir / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in requests["b"][1]))
        cfg = bench_config(str(data_dir / "state"), a.port)
        (data_dir / "bench.yaml").write_text(json.dumps(cfg))  # JSON is YAML
        server_first = a.order.index("a") < a.order.index("b")
        if not server_first:
            _offline(res, data_dir)
        server = start_server(cfg, data_dir)
        base = f"http://127.0.0.1:{a.port}"
        try:
            # not measured: a fresh engine's first requests pay one-time costs (first batch shapes, allocations)
            # that would count against whichever path ran first
            print("warm-up ...", flush=True)
            run_online(base, requests["warm-up"][0][:4 * a.concurrency], a.concurrency)
            for path in [p for p in a.order.split(",") if p != "b"]:
                key, fn, arg = (("online", run_online, requests["c"][0]) if path == "c"
                                else ("batch_api", run_batch_api, requests["a"][1]))
                print(f"{key} ...", flush=True)
                res[key] = measured(fn, base, arg, *([a.concurrency] if path == "c" else []))
                print(res[key], flush=True)
        finally:
            stop_server(server)
        if server_first:
            _offline(res, data_dir)
        if (res["offline_cli"]["steady_output_tokens_per_s"] or 0) < res["online"]["steady_output_tokens_per_s"]:
            # diagnostic: does Ray Data's CPU budget for the engine actor (1 CPU of 2) hold its tasks back?
            print("offline CLI, engine actor reserving 0.1 CPU ...", flush=True)
            res["offline_cli_0.1cpu"] = measured(run_cli, data_dir / "in.jsonl", data_dir / "out2.jsonl", data_dir,
                                                 "--num-cpus", "0.1")
            print(res["offline_cli_0.1cpu"], flush=True)
    res["load_after"] = load_average()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    a.out.with_suffix(".md").write_text(report(res))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
