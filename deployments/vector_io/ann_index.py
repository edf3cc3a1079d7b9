"""Approximate FAISS indexes (HNSW, IVF) of one store's vectors: built off the search path, serialized for snapshots.

Cosine similarity is the inner product of unit vectors (the embeddings and given vectors are normalized), so every
index here uses METRIC_INNER_PRODUCT and its scores are cosines. Ids are chunk seqs (IndexIDMap2).

`device: cuda` (faiss-gpu): the exact index and IVF indexes are moved to the GPU after they are built on the CPU
(the snapshot is always the CPU form, so any replica can load it); faiss-gpu has no HNSW, so HNSW stays on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ANN_KINDS = ("hnsw", "ivf")


def faiss_module():
    import faiss

    return faiss


def on_gpu(cfg: dict[str, Any]) -> bool:
    return str(cfg.get("device", "cpu")).startswith("cuda")


class GpuPlacement:
    """Moves indexes to GPU 0 with one shared StandardGpuResources (faiss-gpu only; a no-op on the CPU)."""

    def __init__(self, cfg: dict[str, Any]):
        self.enabled = on_gpu(cfg) and hasattr(faiss_module(), "StandardGpuResources")
        self._res = None

    def place(self, index: Any, kind: str) -> Any:
        if not self.enabled or kind == "hnsw":
            return index
        faiss = faiss_module()
        self._res = self._res or faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._res, 0, index)  # same calls, on the device


def new_exact_index(dim: int) -> Any:
    faiss = faiss_module()
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def ivf_lists(n: int, cfg: dict[str, Any]) -> int:
    """IVF clusters: `nlist`, but at least 39 training vectors per cluster (FAISS warns below that)."""
    return max(1, min(int(cfg.get("nlist", 1024)), n // 39))


def build_ann(kind: str, dim: int, vectors: np.ndarray, ids: np.ndarray, cfg: dict[str, Any]) -> Any:
    """A CPU HNSW or IVF-Flat index of `vectors` [n, dim] float32 with ids `ids` [n] int64. Blocking and slow
    (HNSW on 100k x 384: about a minute on 2 cores); FAISS releases the GIL meanwhile."""
    faiss = faiss_module()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, int(cfg.get("m", 32)), faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(cfg.get("ef_construction", 200))
    elif kind == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, ivf_lists(len(vectors), cfg), faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        max_train = int(cfg.get("train_max_vectors", 256 * inner.nlist))
        if len(vectors) > max_train:  # k-means needs ~256 points per cluster, not all of them
            sample = vectors[np.random.default_rng(0).choice(len(vectors), max_train, replace=False)]
        inner.train(sample)
    else:
        raise ValueError(f"not an approximate index type: {kind!r}")
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def use_threads(n: int) -> None:
    """FAISS's OpenMP threads for the calling thread's next calls (an OpenMP setting is per thread). Searches run
    single-threaded: one query per search gains nothing from a thread team, and on a busy 2-core box the team's
    spin-waits cost far more than the search (IVF at 20k: 515 QPS with 2 threads, 16,600 with 1)."""
    faiss_module().omp_set_num_threads(max(1, n))


def search_params(kind: str, cfg: dict[str, Any], k: int) -> Any:
    """The recall knobs: HNSW's ef_search (at least k) or IVF's nprobe."""
    faiss = faiss_module()
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=max(int(cfg.get("ef_search", 128)), k))
    if kind == "ivf":
        return faiss.SearchParametersIVF(nprobe=int(cfg.get("nprobe", 64)))
    return None


def serialize(index: Any) -> np.ndarray:
    """The CPU index serialized (faiss.serialize_index: uint8 array); a GPU index is copied back to the CPU first."""
    faiss = faiss_module()
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(faiss.downcast_index(index.index)).__name__:
        index = faiss.index_gpu_to_cpu(index)
    return faiss.serialize_index(index)


def deserialize(data: bytes) -> Any:
    faiss = faiss_module()
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
