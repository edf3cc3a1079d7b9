"""Vector IO benchmark through the running graph (HTTP), on one machine, in one run:

1. embeddings/s through the Embeddings deployment at request batch sizes 1..64 vs sentence-transformers directly,
   plus dynamic batching (many concurrent single-text requests);
2. ingest throughput end to end: upload files, attach them to a store, wait until indexed -> chunks/s;
3. search at 100k chunks, query embedding included: p50/p99 at c=1, QPS at c=16 (and c=8, the old figure), for an
   exact (flat) store and an HNSW one (built in the background once the store is full; the figures are taken once
   its snapshot is saved, i.e. installed). The 100k vectors are synthetic (clustered, 384-d, normalized, inserted
   with their embeddings through /v1/vector-io/insert); queries are real MiniLM embeddings of text queries;
4. (`ann`) FAISS-level: recall@10 of HNSW / IVF vs exact on real text (benchmarks/real_text_corpus.py) and QPS vs
   exact at 1M simulated chunks (benchmarks/ann_bench.py).

    python benchmarks/vector_io_bench.py --out benchmarks/results/vector_io_cpu
    python benchmarks/vector_io_bench.py --parts ann --out /tmp/ann   # one part

Results: the .json of the run and a .md with it next to the figures from before issue 22
(benchmarks/results/vector_io_cpu_before.*).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.engine_compare import percentile  # noqa: E402
from benchmarks.server_process import stop_server  # noqa: E402
from benchmarks.sysinfo import hardware, load_average, software  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
WORDS = ("river mountain engine battery protein galaxy violin harbor glacier copper orchard lantern algorithm "
         "cathedral compass meadow volcano satellite bakery tide forest circuit archive falcon desert").split()
PARTS = ("embeddings", "ingest", "search", "ann")


def sentence(rng: np.random.Generator, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS, n)) + "."


def start_server(port: int, data_dir: str, embed_dtype: str, env: dict[str, str]) -> subprocess.Popen:
    cfg = {
        "data_dir": data_dir,
        "server": {"port": port, "max_request_bytes": 64 * 1024 * 1024},
        "ingress": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.1}},
        "embedding_models": [{"model_id": MINILM, "source": MINILM, "max_batch_size": 64, "dtype": embed_dtype,
                              "deployment": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 1}}}],
        "vector_io": {"deployment": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.5}}},
    }
    path = Path(data_dir) / "bench.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    log = open(Path(data_dir) / "server.log", "w")  # a file, not a pipe: an unread pipe blocks the server
    proc = subprocess.Popen([sys.executable, "-m", "serve.cli", "run", "--config", str(path)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, **env})
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError((Path(data_dir) / "server.log").read_text()[-3000:])
        time.sleep(1)
    raise TimeoutError("the server did not come up")


def bench_embeddings(base: str, rng: np.random.Generator, dtype: str) -> dict:
    from deployments.vector_io.embedding_model import EmbeddingModel

    out: dict = {"direct": {}, "deployment": {}}
    model = EmbeddingModel(MINILM, dtype=dtype)  # as the deployment runs it
    for bs in (1, 8, 32, 64):
        texts = [sentence(rng) for _ in range(bs)]
        reps = max(3, 128 // bs)
        model.encode(texts)
        t = time.perf_counter()
        for _ in range(reps):
            model.encode(texts)
        out["direct"][bs] = bs * reps / (time.perf_counter() - t)
        with httpx.Client(timeout=120) as c:
            c.post(f"{base}/v1/embeddings", json={"model": MINILM, "input": texts})
            t = time.perf_counter()
            for _ in range(reps):
                c.post(f"{base}/v1/embeddings", json={"model": MINILM, "input": texts}).raise_for_status()
            out["deployment"][bs] = bs * reps / (time.perf_counter() - t)
    del model
    texts = [sentence(rng) for _ in range(256)]
    with httpx.Client(timeout=120) as c, ThreadPoolExecutor(32) as pool:
        t = time.perf_counter()
        list(pool.map(lambda s: c.post(f"{base}/v1/embeddings", json={"model": MINILM, "input": s}), texts))
        out["deployment_concurrent_single_text_c32"] = len(texts) / (time.perf_counter() - t)
    return out


def model_ceiling(texts: list[str], dtype: str) -> float:
    """Chunks/s of the embedding model alone on these chunks (in this process, batches of 256, as ingestion sends):
    what end-to-end ingestion could reach at most on this machine."""
    from deployments.vector_io.embedding_model import EmbeddingModel

    model = EmbeddingModel(MINILM, dtype=dtype)
    model.encode(texts[:16])
    t = time.perf_counter()
    for i in range(0, len(texts), 256):
        model.encode(texts[i:i + 256])
    return len(texts) / (time.perf_counter() - t)


def bench_ingest(base: str, rng: np.random.Generator, n_files: int, dtype: str) -> dict:
    with httpx.Client(timeout=300) as c:
        ids = []
        for i in range(n_files):
            body = "\n\n".join(sentence(rng, 60) for _ in range(20)).encode()  # ~1,200 words: several chunks each
            ids.append(c.post(f"{base}/v1/files", files={"file": (f"doc{i}.txt", body)},
                              data={"purpose": "assistants"}).json()["id"])
        store = c.post(f"{base}/v1/vector_stores", json={"name": "ingest"}).json()["id"]
        t = time.perf_counter()
        for i in range(0, len(ids), 100):
            c.post(f"{base}/v1/vector_stores/{store}/file_batches", json={"file_ids": ids[i:i + 100]})
        while True:
            s = c.get(f"{base}/v1/vector_stores/{store}").json()
            if s["file_counts"]["in_progress"] == 0:
                break
            time.sleep(0.5)
        secs = time.perf_counter() - t
        load = load_average()
        pages = [c.get(f"{base}/v1/vector_stores/{store}/files/{f}/content").json() for f in ids]
        texts = [d["text"] for page in pages for d in page["data"]]
    return {"files": n_files, "chunks": len(texts), "seconds": secs, "chunks_per_s": len(texts) / secs,
            "completed": s["file_counts"]["completed"], "load_average_1m": load,
            "model_alone_chunks_per_s": model_ceiling(texts[:512], dtype)}


def synthetic_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.normal(size=(max(n // 100, 1), dim))
    vecs = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.normal(size=(n, dim))
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def wait_for_snapshot(data_dir: str, store: str, kind: str, n: int, timeout: float) -> float:
    """Seconds until the replica's background build of `store` saved its snapshot (it is installed before it is
    saved), read from the blob store under the data directory."""
    from deployments.vector_io.index_snapshots import IndexSnapshots
    from serve.storage import LocalBlobStore

    snapshots = IndexSnapshots(LocalBlobStore(Path(data_dir)))
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        found = snapshots.load(store, kind)
        if found is not None and found[0].ntotal == n:
            return time.perf_counter() - t
        time.sleep(1)
    raise TimeoutError(f"no {kind} snapshot of {store} after {timeout:.0f} s")


async def concurrent_searches(base: str, store: str, queries: list[str], concurrency: int) -> float:
    """QPS of `queries` sent `concurrency` at a time (one asyncio client: less client CPU than threads)."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as c:
        async def one(q: str) -> None:
            async with gate:
                r = await c.post(f"{base}/v1/vector_stores/{store}/search", json={"query": q, "max_num_results": 10})
                r.raise_for_status()

        t = time.perf_counter()
        await asyncio.gather(*[one(q) for q in queries])
        return len(queries) / (time.perf_counter() - t)


def insert_vectors(c: httpx.Client, base: str, store: str, vecs: np.ndarray) -> float:
    t = time.perf_counter()
    for i in range(0, len(vecs), 1000):
        chunks = [{"content": f"chunk {j}", "metadata": {"document_id": f"d{j // 50}"},
                   "embedding": vecs[j].tolist()} for j in range(i, min(i + 1000, len(vecs)))]
        c.post(f"{base}/v1/vector-io/insert", json={"vector_db_id": store, "chunks": chunks}).raise_for_status()
    return time.perf_counter() - t


def search_figures(c: httpx.Client, base: str, store: str, qtexts: list[str]) -> tuple[dict, list[list[str]]]:
    def one(q: str) -> tuple[float, list[str]]:
        t0 = time.perf_counter()
        r = c.post(f"{base}/v1/vector_stores/{store}/search", json={"query": q, "max_num_results": 10})
        r.raise_for_status()
        return time.perf_counter() - t0, [d["content"][0]["text"] for d in r.json()["data"]]

    lat = [one(q) for q in qtexts]  # sequential: latency at c=1
    ms = [x * 1000 for x, _ in lat]
    many = qtexts * 4  # enough requests for a steady state at c=16
    out = {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "mean_ms": statistics.mean(ms),
           "qps_c8": asyncio.run(concurrent_searches(base, store, many, 8)),
           "qps_c16": asyncio.run(concurrent_searches(base, store, many, 16)), "load_average_1m": load_average()}
    return out, [ids for _, ids in lat]


def bench_search(base: str, data_dir: str, rng: np.random.Generator, n: int, queries: int,
                 kinds_wanted: list[str]) -> dict:
    vecs = synthetic_vectors(n, 384, rng)
    qtexts = [sentence(rng, 8) for _ in range(queries)]
    # hnsw: one background build once the store is full (train_min_vectors = n), searched exactly until then;
    # floor: a 100-chunk store, what a search costs through the graph when FAISS costs nothing
    all_kinds = {"floor": ({"type": "flat"}, 100), "flat": ({"type": "flat"}, n),
                 "hnsw": ({"type": "hnsw", "train_min_vectors": n}, n)}
    out: dict = {}
    results: dict[str, list[list[str]]] = {}
    with httpx.Client(timeout=600) as c:
        for kind in kinds_wanted:
            index, size = all_kinds[kind]
            store = c.post(f"{base}/v1/vector_stores", json={"name": f"search-{kind}", "index": index}).json()["id"]
            insert_s = insert_vectors(c, base, store, vecs[:size])
            t = time.perf_counter()
            c.post(f"{base}/v1/vector_stores/{store}/search", json={"query": "warm up", "max_num_results": 10})
            first_s = time.perf_counter() - t  # the first search loads this replica's index from SQL
            row = {"chunks": size, "insert_s": insert_s, "first_search_s": first_s}
            if kind == "hnsw":
                row["during_build_p50_ms"] = search_figures(c, base, store, qtexts[:20])[0]["p50_ms"]
                row["build_ready_s"] = first_s + wait_for_snapshot(data_dir, store, kind, size, 1800)
            figures, results[kind] = search_figures(c, base, store, qtexts)
            out[kind] = {**row, **figures}
            print(kind, json.dumps(out[kind]), flush=True)
    if "hnsw" in out and "flat" in out:
        rec = [len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(results["hnsw"], results["flat"], strict=True)]
        out["hnsw"]["recall_at_10"] = statistics.mean(rec)
    return out


def bench_ann(real_chunks: int, n_queries: int, million: int, nprobe: int, hnsw_1m: bool) -> dict:
    from benchmarks.ann_bench import million_qps, real_text_recall
    from benchmarks.real_text_corpus import real_text_vectors, split_queries

    base, queries = split_queries(real_text_vectors(real_chunks, "bfloat16"), n_queries)
    out = {"real_text": real_text_recall(base, queries), "load_average_1m": load_average()}
    print("real text", json.dumps(out["real_text"]), flush=True)
    if million:
        out["million"] = million_qps(base, queries[:200], million, nprobe, hnsw_1m, 128)
        print("million", json.dumps(out["million"]), flush=True)
    return out


def _embeddings_md(e: dict) -> list[str]:
    lines = ["## Embeddings (texts/s)\n",
             "| batch | direct sentence-transformers | through the deployment (HTTP) | ratio |",
             "| --- | --- | --- | --- |"]
    for bs, direct in e["direct"].items():
        dep = e["deployment"][bs]
        lines.append(f"| {bs} | {direct:.1f} | {dep:.1f} | {dep / direct:.2f}x |")
    lines.append(f"\nDynamic batching: 256 single-text requests at concurrency 32: "
                 f"{e['deployment_concurrent_single_text_c32']:.1f} texts/s.\n")
    return lines


def _search_md(search: dict) -> list[str]:
    n = max(s["chunks"] for s in search.values())
    lines = [f"## Search at {n:,} chunks (through HTTP, query embedding included)\n",
             "floor: a 100-chunk flat store, what a search costs through the graph when FAISS costs nothing. "
             "recall@10: HNSW's hits vs the flat store's for the same queries (synthetic vectors).\n",
             "| index | p50 ms (c=1) | p99 ms (c=1) | QPS c=8 | QPS c=16 | recall@10 vs exact | insert s | "
             "first search s | ready s | p50 ms while building | load 1m |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, s in search.items():
        lines.append(f"| {kind} ({s['chunks']:,}) | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['qps_c8']:.1f} | "
                     f"{s['qps_c16']:.1f} | "
                     f"{s.get('recall_at_10', float('nan')):.3f} | {s['insert_s']:.1f} | {s['first_search_s']:.1f} | "
                     f"{s.get('build_ready_s', 0):.1f} | {s.get('during_build_p50_ms', s['p50_ms']):.1f} | "
                     f"{s['load_average_1m']} |")
    return lines


def _ann_md(ann: dict) -> list[str]:
    rt = ann["real_text"]
    lines = ["## Approximate indexes, FAISS level (deployments/vector_io/ann_index.py, no graph)\n",
             f"Real text: {rt['chunks']} chunks of the Python stdlib's .py files (128 tokens, MiniLM, bf16 autocast), "
             f"{rt['queries']} held-out chunks as queries; single-query searches. Exact: p50 "
             f"{rt['exact']['p50_ms']:.2f} ms, {rt['exact']['qps']:.0f} QPS.\n",
             "| index | build s | knob | recall@10 vs exact | p50 ms | QPS |", "| --- | --- | --- | --- | --- | --- |"]
    for kind in ("hnsw", "ivf"):
        sw = rt[kind]
        for pt in sw["points"]:
            lines.append(f"| {kind} {sw['config']} | {sw['build_s']:.1f} | {sw['knob']}={pt[sw['knob']]} | "
                         f"{pt['recall_at_10']:.3f} | {pt['p50_ms']:.2f} | {pt['qps']:.0f} |")
    m = ann.get("million")
    if m:
        lines += [f"\n{m['chunks']:,} simulated chunks (real-text vectors repeated with N(0, {m['noise']}) noise per "
                  f"component, renormalized), {m['queries']} real-text queries, single-query searches. Exact: p50 "
                  f"{m['exact']['p50_ms']:.1f} ms, {m['exact']['qps']:.1f} QPS.\n",
                  "| index | build s | p50 ms | QPS | x exact QPS | recall@10 vs exact |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for kind in ("ivf", "hnsw"):
            if kind in m:
                r = m[kind]
                lines.append(f"| {kind} {r['config']} | {r['build_s']:.0f} | {r['p50_ms']:.2f} | {r['qps']:.0f} | "
                             f"{r['speedup']:.1f}x | {r['recall_at_10']:.3f} |")
    return lines


def _run_line(r: dict) -> str:
    git = r["software"]["git"]
    env = f" (server environment: {', '.join(r['serve_env'])})" if r.get("serve_env") else ""
    return (f"- `{r['command']}`{env}: {', '.join(p for p in PARTS if p in r)}; {r['date']}, commit "
            f"{git['commit']}{' (dirty)' if git['dirty'] else ''}, load average (1 min) at the start "
            f"{r['load_average_1m']}")


def merge(paths: list[Path]) -> dict:
    """One result of several runs' parts (a later run's part replaces an earlier one's); each run is listed."""
    runs = [json.loads(p.read_text()) for p in paths]
    out = {k: v for r in runs for k, v in r.items() if k in PARTS}
    return {**runs[0], **out, "runs": [{k: v for k, v in r.items() if k not in PARTS and k != "runs"}
                                       | {p: True for p in PARTS if p in r} for r in runs]}


def markdown(r: dict) -> str:
    hw = r["hardware"]
    runs = r.get("runs") or [r]
    lines = ["# Vector IO benchmark: after issue 22\n",
             f"Hardware: {hw['cpu_model']}, {hw['usable_cores']} cores, {hw['memory_gib']} GiB. Model: "
             f"all-MiniLM-L6-v2 (384-d), {r['embed_dtype']} on CPU. A shared box: other work ran alongside (load "
             "averages below and per figure). One run of each figure.\n", "Runs:\n",
             *[_run_line(run) for run in runs], ""]
    if "embeddings" in r:
        lines += _embeddings_md(r["embeddings"])
    if "ingest" in r:
        i = r["ingest"]
        lines.append(f"## Ingest\n\n{i['files']} files, {i['chunks']} chunks in {i['seconds']:.1f} s: "
                     f"**{i['chunks_per_s']:.1f} chunks/s** end to end (upload excluded; attach -> extract -> chunk -> "
                     f"embed -> index; load {i['load_average_1m']}). The embedding model alone on these chunks, in "
                     f"the benchmark's process, batches of 256: {i['model_alone_chunks_per_s']:.1f} chunks/s "
                     f"(ingestion at {i['chunks_per_s'] / i['model_alone_chunks_per_s']:.2f}x of it).\n")
    if "search" in r:
        lines += _search_md(r["search"])
    if "ann" in r:
        lines += [""] + _ann_md(r["ann"])
    before = ROOT / "benchmarks/results/vector_io_cpu_before.md"
    if before.exists():
        lines += ["", "# Before issue 22 (benchmarks/results/vector_io_cpu_before.md)\n",
                  before.read_text().split("\n", 1)[1].replace("\n## ", "\n### ")]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8390)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--search-kinds", default="floor,flat,hnsw", help="search: of floor (100 chunks), flat, hnsw")
    p.add_argument("--ingest-files", type=int, default=200)
    p.add_argument("--embed-dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--real-chunks", type=int, default=20_000, help="ann: real-text corpus size")
    p.add_argument("--million", type=int, default=1_000_000, help="ann: simulated chunks for the QPS figure (0: skip)")
    p.add_argument("--nprobe", type=int, default=64, help="ann: IVF nprobe at the simulated size")
    p.add_argument("--hnsw-1m", action="store_true", help="ann: also build HNSW at the simulated size (slow)")
    p.add_argument("--serve-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment of the server, e.g. RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (repeatable)")
    p.add_argument("--merge", type=Path, nargs="+", help="write one result of these runs' .json files, run nothing")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/vector_io_cpu")
    a = p.parse_args()
    if a.merge:
        result = merge(a.merge)
        a.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
        a.out.with_suffix(".md").write_text(markdown(result))
        return
    parts = set(a.parts.split(","))
    rng = np.random.default_rng(0)
    result: dict = {"hardware": hardware(), "software": software(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                    time.gmtime()), "load_average_1m": load_average(), "embed_dtype": a.embed_dtype,
                    "serve_env": a.serve_env,
                    "command": " ".join(["python", "benchmarks/vector_io_bench.py", *sys.argv[1:]])}
    if parts & {"embeddings", "ingest", "search"}:
        with tempfile.TemporaryDirectory() as data_dir:
            proc = start_server(a.port, data_dir, a.embed_dtype, dict(e.split("=", 1) for e in a.serve_env))
            base = f"http://127.0.0.1:{a.port}"
            try:
                if "embeddings" in parts:
                    result["embeddings"] = bench_embeddings(base, rng, a.embed_dtype)
                    print("embeddings", json.dumps(result["embeddings"]), flush=True)
                if "ingest" in parts:
                    result["ingest"] = bench_ingest(base, rng, a.ingest_files, a.embed_dtype)
                    print("ingest", json.dumps(result["ingest"]), flush=True)
                if "search" in parts:
                    result["search"] = bench_search(base, data_dir, rng, a.chunks, a.queries, a.search_kinds.split(","))
            finally:
                stop_server(proc)
    if "ann" in parts:
        result["ann"] = bench_ann(a.real_chunks, 500, a.million, a.nprobe, a.hnsw_1m)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    a.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
