"""FAISS-level figures of the approximate indexes, through the code the VectorIO replicas run
(deployments/vector_io/ann_index.py: build_ann, search_params), no graph:

- recall@10 against the exact index on real text (stdlib chunks embedded with MiniLM, benchmarks/real_text_corpus.py)
  for HNSW ef_search and IVF nprobe sweeps, with single-query latency;
- QPS of single-query searches (one search = one query, as the service searches) at 1M chunks: exact vs IVF (and
  HNSW with --hnsw-1m: its build takes long on 2 cores). The 1M vectors are simulated: real-text vectors repeated
  with Gaussian noise (so the data keeps real text's shape), queries are held-out real-text vectors.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from deployments.vector_io.ann_index import build_ann, new_exact_index, search_params, use_threads

K = 10


def exact_top(base: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    index = new_exact_index(base.shape[1])
    index.add_with_ids(base, np.arange(len(base), dtype=np.int64))
    return index.search(queries, k)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def single_query_run(index: Any, queries: np.ndarray, params: Any, k: int = K) -> tuple[np.ndarray, float, float]:
    """(ids [nq, k], p50 ms, QPS) of one-query-at-a-time searches, on one FAISS thread as the service searches
    (index.py); builds use every core."""
    use_threads(1)
    found, times = [], []
    t0 = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        found.append(index.search(q[None], k, params=params)[1][0])
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    use_threads(os.cpu_count() or 1)
    return np.stack(found), float(np.median(times) * 1000), len(queries) / total


def sweep(kind: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, cfg: dict[str, Any],
          knob: str, values: list[int]) -> dict[str, Any]:
    ids = np.arange(len(base), dtype=np.int64)
    t = time.perf_counter()
    index = build_ann(kind, base.shape[1], base, ids, cfg)
    out: dict[str, Any] = {"build_s": time.perf_counter() - t, "config": cfg, "knob": knob, "points": []}
    for v in values:
        found, p50, qps = single_query_run(index, queries, search_params(kind, {**cfg, knob: v}, K))
        out["points"].append({knob: v, "recall_at_10": recall(found, truth), "p50_ms": p50, "qps": qps})
    return out


def real_text_recall(base: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    truth = exact_top(base, queries)
    exact = new_exact_index(base.shape[1])
    exact.add_with_ids(base, np.arange(len(base), dtype=np.int64))
    _, p50, qps = single_query_run(exact, queries, None)
    return {"chunks": len(base), "queries": len(queries), "exact": {"p50_ms": p50, "qps": qps},
            "hnsw": sweep("hnsw", base, queries, truth, {"m": 32, "ef_construction": 200}, "ef_search",
                          [16, 32, 64, 128, 256]),
            "ivf": sweep("ivf", base, queries, truth, {"nlist": 1024}, "nprobe", [8, 16, 32, 64, 128])}


def simulated(real: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """`n` unit vectors: real-text vectors repeated with Gaussian noise of `noise` per component."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        v = real[rng.integers(0, len(real), m)] + rng.normal(scale=noise, size=(m, real.shape[1]))
        out[i:i + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def million_qps(real: np.ndarray, queries: np.ndarray, n: int, nprobe: int, hnsw: bool,
                ef_search: int) -> dict[str, Any]:
    base = simulated(real, n, noise=0.02)
    ids = np.arange(n, dtype=np.int64)
    exact = new_exact_index(base.shape[1])
    exact.add_with_ids(base, ids)
    truth, exact_p50, exact_qps = single_query_run(exact, queries, None)
    out: dict[str, Any] = {"chunks": n, "queries": len(queries), "noise": 0.02,
                           "exact": {"p50_ms": exact_p50, "qps": exact_qps}}
    del exact
    kinds = [("ivf", {"nlist": 1024, "nprobe": nprobe, "train_max_vectors": 100_000})]
    if hnsw:
        kinds.append(("hnsw", {"m": 32, "ef_construction": 100, "ef_search": ef_search}))
    for kind, cfg in kinds:
        t = time.perf_counter()
        index = build_ann(kind, base.shape[1], base, ids, cfg)
        build_s = time.perf_counter() - t
        found, p50, qps = single_query_run(index, queries, search_params(kind, cfg, K))
        out[kind] = {"config": cfg, "build_s": build_s, "p50_ms": p50, "qps": qps, "speedup": qps / exact_qps,
                     "recall_at_10": recall(found, truth)}
        del index
    return out
