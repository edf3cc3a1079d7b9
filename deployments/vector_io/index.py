"""In-memory search indexes of one vector store (FAISS for vectors, BM25 for keywords), rebuilt from SQL.

SQL holds the truth (chunks with their embeddings). Every VectorIO replica keeps its own index per store and,
before each use, compares the store's `add_version` / `del_version` with what it loaded: new chunks are appended
(by increasing `seq`), deletions trigger a rebuild. So any replica sees what any other wrote, and a restart only
costs a rebuild.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import sqlalchemy as sa

from deployments.vector_io.bm25 import DEFAULT_LANGUAGE, BM25Index
from deployments.vector_io.tables import chunks
from serve.storage import Database


def _faiss():
    import faiss

    return faiss


class VectorStoreIndex:
    def __init__(self, store_id: str, dim: int, cfg: dict[str, Any]):
        self.store_id = store_id
        self.dim = dim
        self.cfg = cfg
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.index = None
        self.kind = "flat"
        self.bm25 = BM25Index(self.cfg.get("keyword_language", DEFAULT_LANGUAGE))
        self.chunk_file: dict[int, str] = {}  # chunk seq -> file id
        self.last_seq = 0
        self.versions = (-1, -1)

    # ---- building -------------------------------------------------------------------------------------------

    def _new_index(self, vectors: np.ndarray):
        """The FAISS index the config asks for; IVF only once there are enough vectors to train it."""
        faiss = _faiss()
        kind, cfg = self.cfg.get("type", "flat"), self.cfg
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, cfg.get("m", 32), faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = cfg.get("ef_construction", 200)
        elif kind == "ivf" and len(vectors) >= cfg.get("train_min_vectors", 10000):
            nlist = min(cfg.get("nlist", 1024), max(1, len(vectors) // 39))
            quantizer = faiss.IndexFlatIP(self.dim)
            inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            inner.train(vectors)
        else:
            kind, inner = "flat", faiss.IndexFlatIP(self.dim)
        self.kind = kind
        index = faiss.IndexIDMap2(inner)
        on_gpu = str(cfg.get("device", "cpu")).startswith("cuda")
        if on_gpu and kind != "hnsw" and hasattr(faiss, "StandardGpuResources"):
            self._gpu_res = getattr(self, "_gpu_res", None) or faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_res, 0, index)  # faiss-gpu: same calls, on the device
        return index

    def _add(self, rows: list[Any]) -> None:
        if not rows:
            return
        vecs = np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows])
        ids = np.array([r.seq for r in rows], dtype=np.int64)
        if self.index is None or (self.kind == "flat" and self.cfg.get("type") == "ivf"
                                  and self.index.ntotal + len(rows) >= self.cfg.get("train_min_vectors", 10000)):
            # (re)start: first rows, or enough vectors to train the IVF index the config asks for
            if self.index is not None:
                old = self._all_vectors()
                vecs_all, ids_all = np.concatenate([old[0], vecs]), np.concatenate([old[1], ids])
            else:
                vecs_all, ids_all = vecs, ids
            self.index = self._new_index(vecs_all)
            self.index.add_with_ids(vecs_all, ids_all)
        else:
            self.index.add_with_ids(vecs, ids)
        self.bm25.add([r.seq for r in rows], [r.text for r in rows])
        for r in rows:
            self.chunk_file[r.seq] = r.file_id
        self.last_seq = max(self.last_seq, int(ids.max()))

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array(sorted(self.chunk_file), dtype=np.int64)
        vecs = np.stack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim))
        return vecs.astype(np.float32), ids

    def sync(self, db: Database, add_version: int, del_version: int) -> None:
        """Bring the index up to the store's versions (blocking; call from a worker thread)."""
        with self.lock:
            if (add_version, del_version) == self.versions:
                return
            if del_version != self.versions[1]:
                self._reset()
            q = (sa.select(chunks.c.seq, chunks.c.file_id, chunks.c.text, chunks.c.embedding)
                 .where(chunks.c.vector_store_id == self.store_id, chunks.c.seq > self.last_seq)
                 .order_by(chunks.c.seq))
            with db.connect() as c:
                rows = list(c.execute(q))
            for i in range(0, len(rows), 4096):
                self._add(rows[i:i + 4096])
            self.versions = (add_version, del_version)

    # ---- searching --------------------------------------------------------------------------------------------

    def _allowed(self, files: set[str] | None, seqs: set[int] | None) -> set[int] | None:
        """The chunks a filtered search may return: those of the allowed files, plus the allowed chunks by seq
        (inserted chunks are filtered one by one). None: no filter."""
        if files is None and seqs is None:
            return None
        files, seqs = files or set(), seqs or set()
        return {s for s, f in self.chunk_file.items() if f in files or s in seqs}

    def vector_search(self, queries: np.ndarray, k: int, files: set[str] | None,
                      seqs: set[int] | None = None) -> list[tuple[int, float]]:
        """Best chunks for any of the query vectors: [(seq, cosine score)], best first."""
        faiss = _faiss()
        with self.lock:
            if self.index is None or self.index.ntotal == 0:
                return []
            allowed_set = self._allowed(files, seqs)
            allowed = None if allowed_set is None else np.array(sorted(allowed_set), dtype=np.int64)
            if allowed is not None and len(allowed) == 0:
                return []
            params = None
            if self.kind == "ivf":
                params = faiss.SearchParametersIVF(nprobe=self.cfg.get("nprobe", 16))
            elif self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=max(self.cfg.get("ef_search", 128), k))
            if allowed is not None:
                params = params or faiss.SearchParameters()
                params.sel = faiss.IDSelectorBatch(allowed)
            kk = min(k, self.index.ntotal)
            scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), kk, params=params)
        best: dict[int, float] = {}
        for row_ids, row_scores in zip(ids, scores, strict=True):
            for i, s in zip(row_ids.tolist(), row_scores.tolist(), strict=True):
                if i >= 0 and s > best.get(i, -np.inf):
                    best[i] = s
        return sorted(best.items(), key=lambda kv: -kv[1])[:k]

    def keyword_search(self, query: str, k: int, files: set[str] | None,
                       seqs: set[int] | None = None) -> list[tuple[int, float]]:
        """Best chunks by BM25: [(seq, BM25 score scaled to (0, 1], see bm25.py)], best first."""
        with self.lock:
            return self.bm25.search(query, k, self._allowed(files, seqs))


def reciprocal_rank_fusion(*rankings: list[tuple[int, float]], k: int = 60) -> list[tuple[int, float]]:
    """Merge rankings by sum of 1 / (k + rank); the fused score is rescaled so the best possible is 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (cid, _) in enumerate(ranking):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank + 1)
    top = len(rankings) / (k + 1)
    return sorted(((cid, s / top) for cid, s in fused.items()), key=lambda kv: -kv[1])
