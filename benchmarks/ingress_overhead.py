"""Ingress overhead: what the serving path costs around an engine that answers instantly.

One canned OpenAI chat completion, served these ways, each measured at concurrency 1 and 32 (req/s, latency):

    uvicorn            a plain FastAPI app in uvicorn that returns the canned response: the HTTP floor
    app-no-ray         stackserve's own FastAPI app (middleware, validation, error mapping, SSE) in uvicorn, its
                       model handle replaced by an in-process object: the app's cost without Ray
    bare-serve[PLANE]  that plain FastAPI app as a one-deployment Ray Serve app: the framework's floor
    graph[PLANE]       the full Ray Serve graph: HTTP entry -> our Ingress deployment -> a tiny deployment returning
                       the canned response (over DeploymentHandles)
    hosted[PLANE]      the graph with the engine in the Ingress replica (`in_ingress`): HTTP entry -> our Ingress,
                       which calls the canned engine in-process (serve/local_handle.py)
    handle             a direct DeploymentHandle call from this process to that tiny deployment: Ray's hop alone

PLANE is Serve's HTTP entry (`--data-planes`, serve/data_plane.py): `haproxy` (HAProxy -> an Ingress replica that
serves HTTP itself) or `serve_proxy` (Serve's Python proxy relaying to the Ingress over Ray); one local Ray each.

"added p50" is the p50 latency minus uvicorn's at the same concurrency. The tiny deployment is a benchmark fixture
defined here, not a stackserve engine. HTTP clients run in this process (aiohttp), servers in their own processes.

    stackserve bench ingress --duration 5 --out-dir /tmp/ingress
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402  (module level: FastAPI resolves the handlers' annotations here)
from fastapi.responses import StreamingResponse  # noqa: E402

from benchmarks import sysinfo  # noqa: E402
from benchmarks.load import LoadGenerator, LoadSpec  # noqa: E402
from benchmarks.scenarios import ChatScenario, RequestOptions  # noqa: E402
from benchmarks.workloads import WorkItem  # noqa: E402
from serve.local_handle import LocalHandle  # noqa: E402

MODEL = "instant"
ROOT = Path(__file__).resolve().parents[1]
COMPLETION_TOKENS = 8


def canned_chat(model: str = MODEL) -> dict[str, Any]:
    return {"id": "chatcmpl-instant", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " the" * COMPLETION_TOKENS},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": 4 + COMPLETION_TOKENS}}


def canned_chunks(model: str = MODEL) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-instant", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": " the"}) for _ in range(COMPLETION_TOKENS - 1)]
    return out + [chunk({"content": " the"}, "length")]


class InstantEngine:
    """The methods the Ingress calls on an LLM deployment, answering at once with canned OpenAI shapes."""

    async def model_info(self) -> dict[str, Any]:
        return {"context_length": 8192, "engine": "instant"}

    async def stats(self) -> dict[str, Any]:
        return {}

    async def check_health(self) -> None:
        return None

    async def chat(self, req: Any) -> dict[str, Any]:
        return canned_chat(req.model)

    async def chat_stream(self, req: Any) -> AsyncIterator[dict[str, Any]]:
        for c in canned_chunks(req.model):
            yield c


def stack_config():
    from serve.config import parse_config

    return parse_config({"models": [{"model_id": MODEL, "source": MODEL,
                                     "deployment": {"ray_actor_options": {"num_cpus": 0.1}}}],
                         "ingress": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.1}}})


def plain_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        if not body.get("stream"):
            return canned_chat(body.get("model", MODEL))

        async def events() -> AsyncIterator[str]:
            for c in canned_chunks(body.get("model", MODEL)):
                yield f"data: {json.dumps(c)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def stack_app_without_ray():
    from serve.app import create_app
    from serve.context import ServedModel, Stack, set_stack

    cfg = stack_config()
    set_stack(Stack(cfg, {MODEL: ServedModel(cfg.models[0], LocalHandle(InstantEngine()))}, started_at=0))
    return create_app()


def serve_in_uvicorn(kind: str, port: int) -> None:
    import uvicorn

    app = plain_app() if kind == "uvicorn" else stack_app_without_ray()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    t_end = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < t_end:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready within {timeout_s:g}s")


def _stats(latencies_s: list[float], n_ok: int, errors: int, elapsed_s: float,
           error_types: dict[str, int] | None = None) -> dict[str, Any]:
    a = np.asarray(latencies_s) * 1000.0 if latencies_s else np.asarray([np.nan])
    return {"requests": n_ok + errors, "errors": errors, "error_types": error_types or {},
            "req_per_s": n_ok / elapsed_s, "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


async def http_cell(base_url: str, concurrency: int, duration_s: float, stream: bool, warmup: int) -> dict[str, Any]:
    gen = LoadGenerator(f"{base_url}/chat/completions", ChatScenario(),
                        RequestOptions(model=MODEL, stream=stream, ignore_eos=False, temperature=None))
    spec = LoadSpec("concurrency", concurrency, duration_s=duration_s, warmup_requests=warmup,
                    max_time_s=duration_s + 60, request_timeout_s=30)
    out = await gen.run(spec, [WorkItem("hi", 1, COMPLETION_TOKENS)], [WorkItem("hi", 1, COMPLETION_TOKENS)])
    ok = [r for r in out.results if r.ok]
    types = Counter(str(r.error_type) for r in out.results if not r.ok)
    return _stats([r.e2e for r in ok], len(ok), len(out.results) - len(ok), out.duration_s, dict(types))


async def handle_cell(handle: Any, concurrency: int, duration_s: float, stream: bool, warmup: int) -> dict[str, Any]:
    from serve.protocol.openai_chat import ChatCompletionRequest

    req = ChatCompletionRequest(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=stream)
    lat: list[float] = []
    errors: Counter[str] = Counter()

    async def one() -> None:
        if stream:
            async for _ in handle.options(stream=True).chat_stream.remote(req):
                pass
        else:
            await handle.chat.remote(req)

    for _ in range(warmup):
        await one()

    async def worker(stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                await one()
                lat.append(time.perf_counter() - t)
            except Exception as e:  # counted, not raised: a failed call is a result here
                errors[type(e).__name__] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(t0 + duration_s) for _ in range(concurrency)))
    return _stats(lat, len(lat), sum(errors.values()), time.perf_counter() - t0, dict(errors))


def _start_uvicorn(kind: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ingress_overhead", "--serve", kind, "--port",
                             str(port)], cwd=ROOT, env=env, start_new_session=True)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def measure_uvicorn(kind: str, a: argparse.Namespace, log) -> dict[str, dict[str, Any]]:
    proc, port = _start_uvicorn(kind)
    try:
        await wait_http(f"http://127.0.0.1:{port}/v1/models", 60, proc)
        out = {}
        for c in a.concurrency:
            out[str(c)] = await http_cell(f"http://127.0.0.1:{port}/v1", c, a.duration, a.stream, a.warmup)
            log(f"{kind:<11} c={c:<3} {_cell_line(out[str(c)])}")
        return out
    finally:
        _stop(proc)


def measure_ray(a: argparse.Namespace, log, plane: str, with_handle: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """On one Serve data plane (serve/data_plane.py): a bare Serve app (one deployment serving `plain_app`, the
    framework's floor), the full graph, and (`with_handle`) the direct handle. One local Ray (never an existing
    cluster), started after the plane's environment is set and shut down after."""
    import ray
    from ray import serve

    from serve.data_plane import use_data_plane
    from serve.ingress import Ingress

    port = free_port()
    running = use_data_plane(plane)
    if running != plane:
        raise RuntimeError(f"data plane {plane} is not available here")
    ray.init(address="local", num_cpus=a.ray_cpus, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        bare = serve.deployment(serve.ingress(plain_app())(type("BareServe", (), {})), name="BareServe",
                                ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256)
        serve.run(bare.bind(), name="bare-serve", route_prefix="/bare")
        instant = serve.deployment(InstantEngine, name="Instant", ray_actor_options={"num_cpus": 0.1},
                                   max_ongoing_requests=256)
        cfg = stack_config()
        ingress = Ingress.options(name="Ingress", **cfg.ingress.serve_options())
        serve.run(ingress.bind(cfg, {MODEL: instant.bind()}, {}, {}), name="ingress-bench", route_prefix="/")
        serve.run(ingress.bind(cfg, {MODEL: LocalHandle(InstantEngine())}, {}, {}), name="ingress-hosted",
                  route_prefix="/hosted")
        handle = serve.get_deployment_handle("Instant", app_name="ingress-bench")
        paths = {f"bare-serve[{plane}]": f"http://127.0.0.1:{port}/bare/v1",
                 f"graph[{plane}]": f"http://127.0.0.1:{port}/v1",
                 f"hosted[{plane}]": f"http://127.0.0.1:{port}/hosted/v1"}
        out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in paths}

        async def cells() -> None:
            for name, url in paths.items():
                await wait_http(f"{url}/models", 60)
                for c in a.concurrency:
                    out[name][str(c)] = await http_cell(url, c, a.duration, a.stream, a.warmup)
                    log(f"{name:<24} c={c:<3} {_cell_line(out[name][str(c)])}")
            if with_handle:
                out["handle"] = {}
                for c in a.concurrency:
                    out["handle"][str(c)] = await handle_cell(handle, c, a.duration, a.stream, a.warmup)
                    log(f"{'handle':<24} c={c:<3} {_cell_line(out['handle'][str(c)])}")

        asyncio.run(cells())
        return out
    finally:
        serve.shutdown()
        ray.shutdown()


def _cell_line(s: dict[str, Any]) -> str:
    return f"{s['req_per_s']:8.1f} req/s  p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms  errors {s['errors']}"


def markdown(results: dict[str, dict[str, dict[str, Any]]], concurrency: list[int], stream: bool) -> str:
    lines = [f"## Ingress overhead ({'streamed' if stream else 'non-streamed'} chat completion, instant engine)\n",
             "| path | concurrency | req/s | p50 ms | p99 ms | added p50 ms vs uvicorn | errors |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    ray_paths = (k for k in results if k.startswith(("bare-serve", "graph", "hosted")))
    paths = ["uvicorn", "app-no-ray", *ray_paths, "handle"]
    for path in paths:
        for c in concurrency:
            s = results.get(path, {}).get(str(c))
            if s is None:
                continue
            base = results.get("uvicorn", {}).get(str(c))
            added = f"{s['p50_ms'] - base['p50_ms']:+.2f}" if base and path != "handle" else "-"
            errs = ", ".join(f"{k} {v}" for k, v in s["error_types"].items()) or "0"
            reps = s.get("repeats", [])
            rps, p50 = f"{s['req_per_s']:.1f}", f"{s['p50_ms']:.2f}"
            if len(reps) > 1:  # median (min-max over the repetitions)
                rps += f" ({min(x['req_per_s'] for x in reps):.0f}-{max(x['req_per_s'] for x in reps):.0f})"
                p50 += f" ({min(x['p50_ms'] for x in reps):.1f}-{max(x['p50_ms'] for x in reps):.1f})"
            lines.append(f"| {path} | {c} | {rps} | {p50} | {s['p99_ms']:.2f} | {added} | {errs} |")
    lines.append("\n`handle` is an in-process DeploymentHandle call (no HTTP), so it has no uvicorn baseline; the "
                 "HTTP client shares this machine's cores with the servers.\n")
    return "\n".join(lines)


def _one_round(a: argparse.Namespace, log, errors: dict[str, str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in ("uvicorn", "app-no-ray"):
        try:
            results[kind] = asyncio.run(measure_uvicorn(kind, a, log))
        except Exception as e:  # one failed path must not lose the others
            errors[kind] = f"{type(e).__name__}: {e}"
            log(f"{kind}: failed: {errors[kind]}")
    for i, plane in enumerate([] if a.skip_ray else a.data_planes):
        try:
            results.update(measure_ray(a, log, plane, with_handle=i == 0))
        except Exception as e:
            errors[f"graph[{plane}]"] = f"{type(e).__name__}: {e}"
            log(f"{plane}: failed: {errors[f'graph[{plane}]']}")
    return results


def _median_cell(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The repetition with the median req/s, with every repetition's req/s and p50 beside it (the spread)."""
    ranked = sorted(cells, key=lambda c: c["req_per_s"])
    mid = dict(ranked[len(ranked) // 2])
    mid["repeats"] = [{"req_per_s": c["req_per_s"], "p50_ms": c["p50_ms"]} for c in cells]
    return mid


def run(a: argparse.Namespace, log=print) -> dict[str, Any]:
    errors: dict[str, str] = {}
    rounds = []
    for r in range(a.repeats):
        log(f"repetition {r + 1} of {a.repeats}")
        rounds.append(_one_round(a, log, errors))
    results = {path: {c: _median_cell([rnd[path][c] for rnd in rounds if c in rnd.get(path, {})])
                      for c in cells}
               for path, cells in rounds[0].items()}
    return {"config": {"concurrency": a.concurrency, "duration_s": a.duration, "stream": a.stream,
                       "warmup": a.warmup, "ray_cpus": a.ray_cpus, "data_planes": a.data_planes,
                       "repeats": a.repeats, "load_average_after": os.getloadavg()},
            "hardware": sysinfo.hardware(), "software": sysinfo.software(), "results": results, "errors": errors}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stackserve bench ingress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per path and concurrency")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--stream", action="store_true", help="streamed responses (SSE) instead of one JSON body")
    p.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2)
    p.add_argument("--skip-ray", action="store_true", help="only the uvicorn paths")
    p.add_argument("--repeats", type=int, default=1, help="repetitions of every path; cells show the median")
    p.add_argument("--data-planes", type=lambda s: s.split(","), default=["haproxy", "serve_proxy"],
                   help="Serve data planes to measure the Ray paths on, one local Ray each (serve/data_plane.py)")
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--serve", choices=["uvicorn", "app-no-ray"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.serve:
        serve_in_uvicorn(a.serve, a.port)
        return 0
    out = run(a)
    md = markdown(out["results"], a.concurrency, a.stream)
    print(md)
    if a.out_dir is not None:
        a.out_dir.mkdir(parents=True, exist_ok=True)
        (a.out_dir / "ingress_overhead.json").write_text(json.dumps(out, indent=2) + "\n")
        (a.out_dir / "ingress_overhead.md").write_text(md)
        print(f"wrote {a.out_dir / 'ingress_overhead.json'}, {a.out_dir / 'ingress_overhead.md'}")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
