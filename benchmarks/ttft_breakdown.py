"""Where stackserve's time to first token goes at concurrency 1: one model, one short chat prompt, sequential
streamed requests, TTFT p50 measured three ways on the same machine in one run:

    graph   HTTP through Serve's proxy -> Ingress -> LLM deployment (an LLM-only stackserve graph)
    handle  a DeploymentHandle call on the LLM deployment from the driver (no proxy, no ingress)
    raw     vLLM's own OpenAI server on the same checkpoint (`--engine vllm` only)

graph - handle is what the HTTP entry and the ingress hop cost; handle vs raw compares our LLM deployment (chat
template, tokenization, engine, detokenization) with vLLM's whole server. Run it with the python whose engine you
measure (`.venv-vllm/bin/python ... --engine vllm`).

    .venv-vllm/bin/python benchmarks/ttft_breakdown.py --engine vllm --enforce-eager --out benchmarks/results/ttft
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from benchmarks.ingress_overhead import free_port  # noqa: E402
from benchmarks.server_process import stop_server  # noqa: E402
from benchmarks.sysinfo import hardware  # noqa: E402
from benchmarks.workloads import DEFAULT_MODEL_CACHE  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPT = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)  # ~130 prompt tokens with the template


def body() -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8, "stream": True,
            "temperature": 0, "ignore_eos": True}


def _first_content(line: str) -> bool:
    return line.startswith("data: {") and '"content":"' in line and '"content":""' not in line


def http_ttft(base: str, n: int, warmup: int) -> list[float]:
    out = []
    with httpx.Client(timeout=120) as c:
        for _ in range(n + warmup):
            t0, got = time.perf_counter(), None
            with c.stream("POST", f"{base}/v1/chat/completions", json=body()) as r:
                for line in r.iter_lines():
                    if got is None and _first_content(line):
                        got = time.perf_counter() - t0
            out.append(got)
    return out[warmup:]


async def handle_ttft(n: int, warmup: int) -> list[float]:
    from ray import serve

    from serve.graph import deployment_name
    from serve.protocol.openai_chat import ChatCompletionRequest

    h = serve.get_deployment_handle(deployment_name(MODEL), app_name="ttft")
    out = []
    for _ in range(n + warmup):
        req, t0, got = ChatCompletionRequest(**body()), time.perf_counter(), None
        async for chunks in h.options(stream=True).chat_stream.remote(req):
            if got is None and any(c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks):
                got = time.perf_counter() - t0
        out.append(got)
    return out[warmup:]


def measure_graph(a: argparse.Namespace) -> dict[str, list[float]]:
    import ray
    from ray import serve

    from serve.config import parse_config
    from serve.graph import build_graph

    engine = {"type": a.engine, "max_num_seqs": 32, "max_model_len": 2048, "kv_cache_tokens": 16384}
    if a.engine == "vllm":
        engine["enforce_eager"] = a.enforce_eager
    cfg = parse_config({"models": [{"model_id": MODEL, "source": MODEL, "engine": engine,
                                    "deployment": {"ray_actor_options": {"num_cpus": 1}}}],
                        "ingress": {"ray_actor_options": {"num_cpus": 0.1}}})
    port = free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_graph(cfg), name="ttft", route_prefix="/")
        out: dict[str, list[float]] = {"graph": [], "handle": []}
        for _ in range(a.rounds):  # interleaved, so drift hits both alike
            out["graph"] += http_ttft(f"http://127.0.0.1:{port}", a.requests, a.warmup)
            out["handle"] += asyncio.run(handle_ttft(a.requests, a.warmup))
        return out
    finally:
        serve.shutdown()
        ray.shutdown()


def measure_raw(a: argparse.Namespace) -> list[float]:
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(a.model_dir),
           "--served-model-name", MODEL, "--port", str(port), "--dtype", "float32", "--max-model-len", "2048",
           "--max-num-seqs", "32", "--disable-uvicorn-access-log"] + (["--enforce-eager"] if a.enforce_eager else [])
    proc = subprocess.Popen(cmd, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        out: list[float] = []
        for _ in range(a.rounds):
            out += http_ttft(f"http://127.0.0.1:{port}", a.requests, a.warmup)
        return out
    finally:
        stop_server(proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=["meta-reference", "vllm"], default="meta-reference")
    p.add_argument("--enforce-eager", action="store_true", help="vLLM without torch.compile (faster start)")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_CACHE / "SmolLM2-135M-Instruct.Q4_1")
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    a = p.parse_args(argv)
    samples = measure_graph(a)
    if a.engine == "vllm":
        samples["raw"] = measure_raw(a)
    p50 = {k: 1000 * statistics.median(v) for k, v in samples.items()}
    lines = [f"TTFT p50 at concurrency 1, {a.engine} engine{' (eager)' if a.enforce_eager else ''}, "
             f"{a.rounds} x {a.requests} requests after {a.warmup} warm-up each:", ""]
    lines += [f"- {k}: {v:.1f} ms" for k, v in p50.items()]
    lines.append(f"- graph - handle (HTTP entry + ingress hop): {p50['graph'] - p50['handle']:+.1f} ms")
    if "raw" in p50:
        lines.append(f"- graph - raw vLLM server: {p50['graph'] - p50['raw']:+.1f} ms")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".json").write_text(json.dumps({"engine": a.engine, "enforce_eager": a.enforce_eager,
                                                          "hardware": hardware(), "p50_ms": p50,
                                                          "samples_s": samples}, indent=1))
        a.out.with_suffix(".md").write_text(f"# Time to first token, broken down\n\nHardware: {hardware()}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
