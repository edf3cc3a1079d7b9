"""Where stackserve's time to first token goes at concurrency 1: one model, one short chat prompt, sequential
streamed requests, TTFT p50 measured along each path on the same machine in one run (`--paths`):

    relayed  HTTP -> Ingress -> the model's own LLM deployment, which streams each chunk back through the Ingress
             (an LLM-only graph)
    ingress  HTTP -> the Ingress replica that runs the engine itself (`in_ingress`, an LLM-only graph)
    full     HTTP into the whole `--config` graph (configs/local.yaml: every deployment, telemetry as configured),
             started by `stackserve run` in a process of its own, its models on `--engine`
    quiet    the same whole graph with tracing and metrics off
    raw      vLLM's own OpenAI server on the same checkpoint (`--engine vllm` only)

Each path's server starts on its own, in the order given, and is measured in `--rounds` rounds; with `--starts N`
the whole sequence runs N times (a server's start decides where its processes land on the cores, and that moved a
path's TTFT by tens of ms from one start to the next). The LLM-only graphs are also measured over a direct
DeploymentHandle call to the replica that runs the engine (`relayed-handle`, `ingress-handle`), interleaved with
their HTTP rounds: HTTP minus handle is what the HTTP entry (and, relayed, the Ingress hop) costs; handle vs raw
compares our engine wrapper (chat template, tokenization, engine, detokenization) with vLLM's whole server; full
minus ingress is what the rest of the graph costs a request whose engine is in the Ingress. Run it with the python
whose engine you measure.

    .venv-vllm/bin/python benchmarks/ttft_breakdown.py --engine vllm --enforce-eager --out benchmarks/results/ttft
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from benchmarks.compare import ServerProcess, config_variant  # noqa: E402
from benchmarks.ingress_overhead import free_port  # noqa: E402
from benchmarks.sysinfo import hardware  # noqa: E402
from benchmarks.workloads import DEFAULT_MODEL_CACHE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPT = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)  # ~130 prompt tokens with the template
_sent = itertools.count()
PATHS = ("relayed", "ingress", "full", "quiet", "raw")


def body() -> dict:
    """Each request its own prompt (a number first): a repeated one would be answered from the engines' prefix
    caches, and TTFT would leave out the prefill that a new prompt costs."""
    content = f"{next(_sent)} {PROMPT}"
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8, "stream": True,
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


async def handle_ttft(deployment: str, app: str, n: int, warmup: int) -> list[float]:
    from ray import serve

    from serve.protocol.openai_chat import ChatCompletionRequest

    h = serve.get_deployment_handle(deployment, app_name=app)
    out = []
    for _ in range(n + warmup):
        req, t0, got = ChatCompletionRequest(**body()), time.perf_counter(), None
        async for chunks in h.options(stream=True).chat_stream.remote(req):
            if got is None and any(c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks):
                got = time.perf_counter() - t0
        out.append(got)
    return out[warmup:]


def measure_llm_graph(a: argparse.Namespace, path: str) -> dict[str, list[list[float]]]:
    """`relayed` or `ingress`: an LLM-only graph alone in a fresh Ray, over HTTP and over a handle, interleaved.

    One graph at a time: two vLLM engines side by side put both LLM-only paths behind the whole graph (each binds
    its OpenMP thread to the same core, and vLLM's CPU scheduler process does not sleep when idle, by its own TODO in
    vllm/utils/ompmultiprocessing.py)."""
    import ray
    from ray import serve

    from serve.config import parse_config
    from serve.graph import build_graph, deployment_name

    engine = {"type": a.engine, "max_num_seqs": 32, "max_model_len": 2048, "kv_cache_tokens": 16384}
    if a.engine == "vllm":
        engine["enforce_eager"] = a.enforce_eager
    cfg = parse_config({"models": [{"model_id": MODEL, "source": MODEL, "engine": engine,
                                    "in_ingress": path == "ingress",
                                    "deployment": {"ray_actor_options": {"num_cpus": 1}}}],
                        "ingress": {"ray_actor_options": {"num_cpus": 0.1}}})
    engine_at = "Ingress" if path == "ingress" else deployment_name(MODEL)
    port = free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_graph(cfg), name=path, route_prefix=f"/{path}")
        out: dict[str, list[list[float]]] = {path: [], f"{path}-handle": []}
        for _ in range(a.rounds):  # interleaved, so drift hits both alike
            out[path].append(http_ttft(f"http://127.0.0.1:{port}/{path}", a.requests, a.warmup))
            out[f"{path}-handle"].append(asyncio.run(handle_ttft(engine_at, path, a.requests, a.warmup)))
        return out
    finally:
        serve.shutdown()
        ray.shutdown()


def serve_and_measure(a: argparse.Namespace, name: str, cmd: list[str], env: dict[str, str]) -> list[list[float]]:
    """Start a server (compare's ServerProcess: its own session, its log under the system's temp directory), wait
    for a 1-token chat to succeed, measure, stop it."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="ttft-")) / f"{name}.log"
    proc = ServerProcess(name, [*cmd, "--port", str(port)], env, log).start()
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(proc.wait_ready(f"{base}/v1", MODEL, a.startup_timeout))
        return [http_ttft(base, a.requests, a.warmup) for _ in range(a.rounds)]
    finally:
        proc.stop()


def measure_full(a: argparse.Namespace, quiet: bool) -> list[list[float]]:
    """`--config` with its meta-reference models on `--engine`, and telemetry off if `quiet`."""
    config = config_variant(a.config, on_vllm=a.engine == "vllm", composed=False, enforce_eager=a.enforce_eager,
                            telemetry_off=quiet)
    cmd = [sys.executable, "-m", "serve.cli", "run", "--config", str(config), "--host", "127.0.0.1"]
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return serve_and_measure(a, "quiet" if quiet else "full", cmd, {"RAY_ADDRESS": "local", "PYTHONPATH": pythonpath})


def measure_raw(a: argparse.Namespace) -> list[list[float]]:
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(a.model_dir),
           "--served-model-name", MODEL, "--host", "127.0.0.1", "--dtype", "float32", "--max-model-len", "2048",
           "--max-num-seqs", "32", "--disable-uvicorn-access-log"] + (["--enforce-eager"] if a.enforce_eager else [])
    return serve_and_measure(a, "raw", cmd, {"VLLM_CPU_KVCACHE_SPACE": "1"})


def report(a: argparse.Namespace, rounds: dict[str, list[list[float]]]) -> tuple[dict[str, float], str]:
    """p50 over all of a path's requests, with the range of its rounds' p50s; the differences between paths."""
    p50 = {k: 1000 * statistics.median([x for r in v for x in r]) for k, v in rounds.items()}
    lines = [f"TTFT p50 at concurrency 1, {a.engine} engine{' (eager)' if a.enforce_eager else ''}, "
             f"{a.starts} start(s) x {a.rounds} x {a.requests} requests after {a.warmup} warm-up each (the range of "
             "the rounds' p50s):", ""]
    for k, v in p50.items():
        per_round = [1000 * statistics.median(r) for r in rounds[k]]
        lines.append(f"- {k}: {v:.1f} ms ({min(per_round):.1f}-{max(per_round):.1f})")
    lines.append("")
    diffs = [("relayed", "relayed-handle", "HTTP entry + the Ingress relaying the LLM deployment's stream"),
             ("ingress", "ingress-handle", "HTTP entry into the Ingress that runs the engine"),
             ("full", "ingress", "the rest of the graph, telemetry as configured"),
             ("full", "quiet", "tracing and metrics"),
             ("quiet", "ingress", "the rest of the graph, telemetry off"),
             ("ingress-handle", "raw", "our engine wrapper + a handle call vs vLLM's whole server"),
             ("full", "raw", "the whole graph vs vLLM's server")]
    lines += [f"- {x} - {y} ({what}): {p50[x] - p50[y]:+.1f} ms" for x, y, what in diffs if x in p50 and y in p50]
    return p50, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=["meta-reference", "vllm"], default="meta-reference")
    p.add_argument("--enforce-eager", action="store_true", help="vLLM without torch.compile (faster start)")
    p.add_argument("--paths", default="relayed,ingress,full,quiet,raw",
                   help=f"comma-separated, of {', '.join(PATHS)} (raw needs --engine vllm)")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml", help="the graph of full/quiet")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_CACHE / "SmolLM2-135M-Instruct.Q4_1")
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="rounds of --requests per server start")
    p.add_argument("--starts", type=int, default=1, help="times each path's server is started")
    p.add_argument("--startup-timeout", type=float, default=900)
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    a = p.parse_args(argv)
    paths = [x for x in a.paths.split(",") if x]
    if unknown := set(paths) - set(PATHS):
        p.error(f"unknown paths: {', '.join(sorted(unknown))}")
    if "raw" in paths and a.engine != "vllm":
        p.error("raw is vLLM's own server: pass --engine vllm")
    rounds: dict[str, list[list[float]]] = {}
    started: dict[str, list[dict]] = {}  # when each server started, and the box's load then
    for _ in range(a.starts):
        for path in paths:
            started.setdefault(path, []).append({"at": time.strftime("%H:%M:%S"), "load": os.getloadavg()[0]})
            if path in ("relayed", "ingress"):
                measured = measure_llm_graph(a, path)
            elif path in ("full", "quiet"):
                measured = {path: measure_full(a, quiet=path == "quiet")}
            else:
                measured = {path: measure_raw(a)}
            for k, v in measured.items():
                rounds.setdefault(k, []).extend(v)
    p50, text = report(a, rounds)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".json").write_text(json.dumps({"engine": a.engine, "enforce_eager": a.enforce_eager,
                                                          "hardware": hardware(), "p50_ms": p50, "started": started,
                                                          "samples_s": rounds}, indent=1))
        a.out.with_suffix(".md").write_text(f"# Time to first token, broken down\n\nHardware: {hardware()}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
