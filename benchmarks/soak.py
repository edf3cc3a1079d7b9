"""Soak run: bounded mixed traffic through the whole graph, reporting the error rate per request type and the memory
of every deployment's replicas over time.

Starts the graph of --config (default configs/local.yaml: SmolLM2, MiniLM, vector IO, safety, agents, datasets,
batches) in a local Ray with a throwaway data dir, warms it up, then for --duration seconds keeps --concurrency
clients busy with a weighted mix: chat (streamed and not), embeddings, vector-store search, Responses (stored,
some with file_search), conversations, file upload + delete, run-shield. Every --sample-s it records each replica
process's RSS (from /proc, on this node). Output: JSON + markdown under benchmarks/results/.

    python benchmarks/soak.py --duration 600 --concurrency 8 --out benchmarks/results/soak_cpu
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from benchmarks.sysinfo import hardware  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FACTS = ["Honeybees tell their sisters where flowers are with the waggle dance.",
         "Pyroclastic flows are the deadliest volcanic hazard.",
         "The axolotl can regrow its limbs and parts of its brain.",
         "Copper turns green as it forms a patina of copper carbonate."]
QUESTIONS = ["How do bees share where flowers are?", "What is the deadliest volcanic hazard?",
             "Which animal regrows its limbs?", "Why does copper turn green?"]


class Mix:
    """The request types and their weights; each `call` returns the HTTP status (0 for a transport error)."""

    def __init__(self, base: str, model: str, embedder: str, store_id: str, rng: random.Random):
        self.base, self.model, self.embedder, self.store_id, self.rng = base, model, embedder, store_id, rng
        self.kinds = {"chat_stream": 30, "chat": 10, "embeddings": 15, "vector_search": 15, "responses": 10,
                      "responses_file_search": 5, "conversation": 5, "file_roundtrip": 5, "run_shield": 5}

    def pick(self) -> str:
        return self.rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]

    async def call(self, s: aiohttp.ClientSession, kind: str) -> int:
        q = self.rng.choice(QUESTIONS)
        msgs = [{"role": "user", "content": q}]
        if kind == "chat_stream":
            async with s.post(f"{self.base}/v1/chat/completions", json={
                    "model": self.model, "messages": msgs, "max_tokens": 32, "stream": True}) as r:
                body = await r.text()
                return r.status if r.status != 200 or "[DONE]" in body and '"error"' not in body else 599
        if kind == "chat":
            return await _post(s, f"{self.base}/v1/chat/completions",
                               {"model": self.model, "messages": msgs, "max_tokens": 16})
        if kind == "embeddings":
            return await _post(s, f"{self.base}/v1/embeddings", {"model": self.embedder, "input": [q] * 4})
        if kind == "vector_search":
            return await _post(s, f"{self.base}/v1/vector_stores/{self.store_id}/search", {"query": q})
        if kind in ("responses", "responses_file_search"):
            body: dict[str, Any] = {"model": self.model, "input": q, "max_output_tokens": 24}
            if kind == "responses_file_search":
                body["tools"] = [{"type": "file_search", "vector_store_ids": [self.store_id]}]
            return await _post(s, f"{self.base}/v1/responses", body)
        if kind == "conversation":
            async with s.post(f"{self.base}/v1/conversations", json={}) as r:
                if r.status != 200:
                    return r.status
                conv = (await r.json())["id"]
            status = await _post(s, f"{self.base}/v1/responses", {"model": self.model, "input": q,
                                                                   "max_output_tokens": 8, "conversation": conv})
            async with s.delete(f"{self.base}/v1/conversations/{conv}") as r:
                return status if status != 200 else r.status
        if kind == "file_roundtrip":
            form = aiohttp.FormData()
            form.add_field("purpose", "assistants")
            form.add_field("file", self.rng.choice(FACTS).encode() * 20, filename="soak.txt")
            async with s.post(f"{self.base}/v1/files", data=form) as r:
                if r.status != 200:
                    return r.status
                fid = (await r.json())["id"]
            async with s.delete(f"{self.base}/v1/files/{fid}") as r:
                return r.status
        if kind == "run_shield":
            return await _post(s, f"{self.base}/v1/safety/run-shield",
                               {"shield_id": "code-scanner", "messages": msgs, "params": {}})
        raise ValueError(kind)


async def _post(s: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    async with s.post(url, json=body) as r:
        await r.read()
        return r.status


def replica_rss_mb(app: str) -> dict[str, list[float]]:
    """{deployment: [RSS MB of each live replica]} for `app`'s replicas on this node: Ray titles each replica's
    process `ray::ServeReplica:<app>:<deployment>`."""
    prefix = f"ray::ServeReplica:{app}:"
    out: dict[str, list[float]] = defaultdict(list)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not title.startswith(prefix):
                continue
            rss_kb = next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines()
                          if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        out[title[len(prefix):].split()[0]].append(rss_kb / 1024)
    return dict(out)


async def setup_store(base: str) -> str:
    async with aiohttp.ClientSession() as s:
        ids = []
        for i, fact in enumerate(FACTS):
            form = aiohttp.FormData()
            form.add_field("purpose", "assistants")
            form.add_field("file", fact.encode(), filename=f"fact{i}.txt")
            async with s.post(f"{base}/v1/files", data=form) as r:
                ids.append((await r.json())["id"])
        async with s.post(f"{base}/v1/vector_stores", json={"name": "soak", "file_ids": ids}) as r:
            store = (await r.json())["id"]
        for _ in range(600):
            async with s.get(f"{base}/v1/vector_stores/{store}") as r:
                if (await r.json())["file_counts"]["in_progress"] == 0:
                    return store
            await asyncio.sleep(0.2)
    raise RuntimeError("the soak vector store never finished ingesting")


async def soak(base: str, mix: Mix, duration_s: float, concurrency: int, sample_s: float, app: str) -> dict:
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"n": 0, "errors": defaultdict(int), "latency_s": []})
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    end = t0 + duration_s

    async def worker() -> None:
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            while time.monotonic() < end:
                kind = mix.pick()
                start = time.monotonic()
                try:
                    status = await mix.call(s, kind)
                except (TimeoutError, aiohttp.ClientError):
                    status = 0
                st = stats[kind]
                st["n"] += 1
                st["latency_s"].append(time.monotonic() - start)
                if status != 200:
                    st["errors"][str(status)] += 1

    async def sampler() -> None:
        while time.monotonic() < end:
            rss = await asyncio.to_thread(replica_rss_mb, app)
            samples.append({"t_s": round(time.monotonic() - t0, 1), "rss_mb": rss})
            await asyncio.sleep(sample_s)

    await asyncio.gather(sampler(), *[worker() for _ in range(concurrency)])
    samples.append({"t_s": round(time.monotonic() - t0, 1), "rss_mb": await asyncio.to_thread(replica_rss_mb, app)})
    return {"requests": stats, "samples": samples, "elapsed_s": time.monotonic() - t0}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    per_kind = {}
    total = errors = 0
    for kind, st in sorted(raw["requests"].items()):
        lat = np.array(st["latency_s"]) * 1000
        n_err = sum(st["errors"].values())
        total, errors = total + st["n"], errors + n_err
        per_kind[kind] = {"requests": st["n"], "errors": dict(st["errors"]), "error_rate": n_err / max(st["n"], 1),
                          "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                          "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None}
    first, last = raw["samples"][0], raw["samples"][-1]
    minutes = max((last["t_s"] - first["t_s"]) / 60, 1e-9)
    memory = {}
    for dep in sorted(set(first["rss_mb"]) | set(last["rss_mb"])):
        a, b = sum(first["rss_mb"].get(dep, [])), sum(last["rss_mb"].get(dep, []))
        peak = max(sum(s["rss_mb"].get(dep, [])) for s in raw["samples"])
        memory[dep] = {"start_mb": round(a, 1), "end_mb": round(b, 1), "peak_mb": round(peak, 1),
                       "growth_mb": round(b - a, 1), "growth_mb_per_min": round((b - a) / minutes, 2),
                       "replicas": len(last["rss_mb"].get(dep, []))}
    return {"total_requests": total, "errors": errors, "error_rate": errors / max(total, 1),
            "requests_per_s": total / raw["elapsed_s"], "per_kind": per_kind, "memory": memory}


def markdown(summary: dict[str, Any], args: argparse.Namespace, hw: dict[str, Any]) -> str:
    lines = [f"# Soak run: {args.duration:g} s of mixed traffic, {args.concurrency} clients ({args.config.name})", "",
             f"Hardware: {hw}", "",
             f"Requests: {summary['total_requests']} ({summary['requests_per_s']:.2f}/s), errors: "
             f"{summary['errors']} ({summary['error_rate']:.3%}).", "",
             "| request | count | errors (by status) | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    for kind, k in summary["per_kind"].items():
        lines.append(f"| {kind} | {k['requests']} | {k['errors'] or 0} | {k['p50_ms']} | {k['p99_ms']} |")
    lines += ["", "Memory (RSS of all replicas of each deployment, after warm-up -> end):", "",
              "| deployment | replicas | start MB | end MB | peak MB | growth MB | MB/min |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for dep, m in summary["memory"].items():
        lines.append(f"| {dep} | {m['replicas']} | {m['start_mb']} | {m['end_mb']} | {m['peak_mb']} | "
                     f"{m['growth_mb']} | {m['growth_mb_per_min']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument("--warmup", type=float, default=60.0, help="mixed traffic before the memory baseline")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--sample-s", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak_cpu")
    args = p.parse_args(argv)

    import ray
    from ray import serve

    from benchmarks.ingress_overhead import free_port
    from serve.config import load_config
    from serve.graph import build_graph

    with tempfile.TemporaryDirectory() as data_dir:
        import os

        os.environ["STACKSERVE_DATA_DIR"] = data_dir
        config = load_config(args.config)
        port = free_port()
        ray.init(include_dashboard=False, logging_level="WARNING",
                 runtime_env={"env_vars": {"STACKSERVE_DATA_DIR": data_dir, "TOKENIZERS_PARALLELISM": "false"}})
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            serve.run(build_graph(config), name="soak", route_prefix="/")
            base = f"http://127.0.0.1:{port}"
            store = asyncio.run(setup_store(base))
            mix = Mix(base, config.models[0].model_id, config.embedding_models[0].model_id, store,
                      random.Random(args.seed))
            print(f"warm-up {args.warmup:g} s", flush=True)
            asyncio.run(soak(base, mix, args.warmup, args.concurrency, args.warmup, "soak"))
            print(f"soak {args.duration:g} s, {args.concurrency} clients", flush=True)
            raw = asyncio.run(soak(base, mix, args.duration, args.concurrency, args.sample_s, "soak"))
        finally:
            serve.shutdown()
            ray.shutdown()
    summary = summarize(raw)
    hw = hardware()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"config": str(args.config), "duration_s": args.duration, "concurrency": args.concurrency,
         "hardware": hw, "summary": summary, "samples": raw["samples"]}, indent=1, default=str))
    md = markdown(summary, args, hw)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0 if summary["error_rate"] < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
