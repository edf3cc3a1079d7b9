"""Vector IO benchmark through the running graph (HTTP), on one machine, in one run:

1. embeddings/s through the Embeddings deployment at request batch sizes 1..64 vs sentence-transformers directly,
   plus dynamic batching (many concurrent single-text requests);
2. ingest throughput end to end: upload files, attach them to a store, wait until indexed -> chunks/s;
3. search at 100k chunks: latency p50/p99 and QPS for exact (flat), HNSW and IVF stores, and recall@10 of the
   approximate indexes against exact. The 100k vectors are synthetic (clustered, 384-d, normalized, inserted
   with their embeddings through /v1/vector-io/insert); queries are real MiniLM embeddings of text queries.

    python benchmarks/vector_io_bench.py --out benchmarks/results/vector_io_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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

from benchmarks.engine_compare import hardware, percentile  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
WORDS = ("river mountain engine battery protein galaxy violin harbor glacier copper orchard lantern algorithm "
         "cathedral compass meadow volcano satellite bakery tide forest circuit archive falcon desert").split()


def sentence(rng: np.random.Generator, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS, n)) + "."


def start_server(port: int, data_dir: str) -> subprocess.Popen:
    cfg = {
        "data_dir": data_dir,
        "server": {"port": port, "max_request_bytes": 64 * 1024 * 1024},
        "ingress": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.1}},
        "embedding_models": [{"model_id": MINILM, "source": MINILM, "max_batch_size": 64,
                              "deployment": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 1}}}],
        "vector_io": {"deployment": {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.5}}},
    }
    path = Path(data_dir) / "bench.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    log = open(Path(data_dir) / "server.log", "w")  # a file, not a pipe: an unread pipe blocks the server
    proc = subprocess.Popen([sys.executable, "-m", "serve.cli", "run", "--config", str(path)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
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


def bench_embeddings(base: str, rng: np.random.Generator) -> dict:
    from deployments.vector_io.embedding_model import EmbeddingModel

    out: dict = {"direct": {}, "deployment": {}}
    model = EmbeddingModel(MINILM)
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


def bench_ingest(base: str, rng: np.random.Generator, n_files: int) -> dict:
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
        chunks = sum(len(c.get(f"{base}/v1/vector_stores/{store}/files/{f}/content").json()["data"]) for f in ids)
    return {"files": n_files, "chunks": chunks, "seconds": secs, "chunks_per_s": chunks / secs,
            "completed": s["file_counts"]["completed"]}


def synthetic_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.normal(size=(max(n // 100, 1), dim))
    vecs = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.normal(size=(n, dim))
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def bench_search(base: str, rng: np.random.Generator, n: int, queries: int) -> dict:
    vecs = synthetic_vectors(n, 384, rng)
    qtexts = [sentence(rng, 8) for _ in range(queries)]
    kinds = {"flat": {"type": "flat"}, "hnsw": {"type": "hnsw", "m": 32, "ef_search": 128},
             "ivf": {"type": "ivf", "nlist": 1024, "nprobe": 16, "train_min_vectors": 10000}}
    out: dict = {}
    results: dict[str, list[list[str]]] = {}
    with httpx.Client(timeout=600) as c:
        for kind, index in kinds.items():
            store = c.post(f"{base}/v1/vector_stores", json={"name": f"search-{kind}", "index": index}).json()["id"]
            t = time.perf_counter()
            for i in range(0, n, 1000):
                chunks = [{"content": f"chunk {j}", "metadata": {"document_id": f"d{j // 50}"},
                           "embedding": vecs[j].tolist()} for j in range(i, min(i + 1000, n))]
                c.post(f"{base}/v1/vector-io/insert", json={"vector_db_id": store, "chunks": chunks}).raise_for_status()
            insert_s = time.perf_counter() - t
            t = time.perf_counter()
            c.post(f"{base}/v1/vector_stores/{store}/search", json={"query": "warm up", "max_num_results": 10})
            build_s = time.perf_counter() - t  # the first search builds this replica's index from SQL

            def one(q: str, store: str = store) -> tuple[float, list[str]]:
                t0 = time.perf_counter()
                r = c.post(f"{base}/v1/vector_stores/{store}/search", json={"query": q, "max_num_results": 10})
                return time.perf_counter() - t0, [d["content"][0]["text"] for d in r.json()["data"]]

            lat = [one(q) for q in qtexts]  # sequential: latency
            results[kind] = [ids for _, ids in lat]
            with ThreadPoolExecutor(8) as pool:
                t = time.perf_counter()
                list(pool.map(one, qtexts))
                qps = len(qtexts) / (time.perf_counter() - t)
            ms = [x * 1000 for x, _ in lat]
            out[kind] = {"chunks": n, "insert_s": insert_s, "first_search_build_s": build_s,
                         "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                         "mean_ms": statistics.mean(ms), "qps_c8": qps}
    for kind in ("hnsw", "ivf"):
        rec = [len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(results[kind], results["flat"], strict=True)]
        out[kind]["recall_at_10"] = statistics.mean(rec)
    return out


def markdown(r: dict) -> str:
    hw = r["hardware"]
    lines = [f"# Vector IO benchmark\n\nHardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory_gib']} GiB. "
             f"Date: {r['date']}. Model: all-MiniLM-L6-v2 (384-d), fp32 CPU.\n",
             "## Embeddings (texts/s)\n",
             "| batch | direct sentence-transformers | through the deployment (HTTP) | ratio |",
             "| --- | --- | --- | --- |"]
    e = r["embeddings"]
    for bs, direct in e["direct"].items():
        dep = e["deployment"][bs]
        lines.append(f"| {bs} | {direct:.1f} | {dep:.1f} | {dep / direct:.2f}x |")
    lines.append(f"\nDynamic batching: 256 single-text requests at concurrency 32: "
                 f"{e['deployment_concurrent_single_text_c32']:.1f} texts/s.\n")
    i = r["ingest"]
    lines.append(f"## Ingest\n\n{i['files']} files, {i['chunks']} chunks in {i['seconds']:.1f} s: "
                 f"**{i['chunks_per_s']:.1f} chunks/s** end to end (upload excluded; attach -> extract -> chunk -> "
                 "embed -> index).\n")
    lines += ["## Search at 100k chunks (through HTTP, query embedding included)\n",
              "| index | p50 ms | p99 ms | QPS (c=8) | recall@10 vs exact | insert s | first-search build s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind, s in r["search"].items():
        lines.append(f"| {kind} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['qps_c8']:.1f} | "
                     f"{s.get('recall_at_10', 1.0):.3f} | {s['insert_s']:.1f} | {s['first_search_build_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8390)
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--ingest-files", type=int, default=40)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/vector_io_cpu")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as data_dir:
        proc = start_server(a.port, data_dir)
        base = f"http://127.0.0.1:{a.port}"
        try:
            result = {"hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M"),
                      "embeddings": bench_embeddings(base, rng)}
            print("embeddings", json.dumps(result["embeddings"]), flush=True)
            result["ingest"] = bench_ingest(base, rng, a.ingest_files)
            print("ingest", json.dumps(result["ingest"]), flush=True)
            result["search"] = bench_search(base, rng, a.chunks, a.queries)
            print("search", json.dumps(result["search"]), flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    a.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
