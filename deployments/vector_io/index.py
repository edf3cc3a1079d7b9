"""In-memory search indexes of one vector store (FAISS for vectors, BM25 for keywords), kept hot per replica.

SQL holds the truth (chunks with their embeddings). Every VectorIO replica keeps its own index per store and,
before each use, compares the store's `add_version` / `del_version` with what it loaded: new chunks are appended
(by increasing `seq`), deletions trigger a rebuild. So any replica sees what any other wrote.

Vectors: an exact inner-product index always (IndexFlatIP), and for stores of type hnsw / ivf an approximate one
built in the background once the store holds `train_min_vectors` chunks (ann_builder.py). Until it is ready,
searches are exact. Once it is, it answers unfiltered searches together with a small exact "tail" of the chunks
added after it was built; when the tail passes `rebuild_fraction` of the approximate index, a new one is built
in the background. Filtered searches stay exact (with the allowed ids). A replica that starts on a store loads
the approximate index's snapshot from the blob store (index_snapshots.py) instead of building it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import sqlalchemy as sa

from deployments.vector_io.ann_builder import AnnBuilder, AnnBuildJob
from deployments.vector_io.ann_index import (
    ANN_KINDS,
    GpuPlacement,
    faiss_module,
    new_exact_index,
    search_params,
    use_threads,
)
from deployments.vector_io.bm25 import DEFAULT_LANGUAGE, BM25Index
from deployments.vector_io.tables import chunks
from serve.storage import Database

DEFAULT_REBUILD_FRACTION = 0.2


class VectorStoreIndex:
    def __init__(self, store_id: str, dim: int, cfg: dict[str, Any], builder: AnnBuilder | None = None):
        """`builder`: runs this store's approximate-index builds and holds the snapshots (None: exact only)."""
        self.store_id = store_id
        self.dim = dim
        self.cfg = cfg
        self.builder = builder
        self.ann_kind = cfg.get("type") if cfg.get("type") in ANN_KINDS else None
        self.lock = threading.Lock()
        self.generation = 0  # bumped by every reset: a build started before it is dropped
        self._gpu = GpuPlacement(cfg)
        self._building = False
        self._ready = threading.Event()  # set whenever no build is running (tests and benchmarks wait on it)
        self._ready.set()
        self._reset()

    def _reset(self) -> None:
        self.generation += 1
        self.exact = self._gpu.place(new_exact_index(self.dim), "flat")
        self.ann: Any = None
        self.ann_seq = 0  # the approximate index holds the chunks up to this seq; the tail those after
        self.tail: Any = None
        self.bm25 = BM25Index(self.cfg.get("keyword_language", DEFAULT_LANGUAGE))
        self.chunk_file: dict[int, str] = {}  # chunk seq -> file id
        self.last_seq = 0
        self.versions = (-1, -1)

    @property
    def kind(self) -> str:
        """The index unfiltered searches use now: flat until an approximate one is ready."""
        return self.ann_kind if self.ann is not None else "flat"

    # ---- building -------------------------------------------------------------------------------------------

    def _add(self, rows: list[Any]) -> None:
        if not rows:
            return
        vecs = np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows])
        ids = np.array([r.seq for r in rows], dtype=np.int64)
        self.exact.add_with_ids(vecs, ids)
        if self.ann is not None:
            newer = ids > self.ann_seq
            self.tail.add_with_ids(vecs[newer], ids[newer])
        self.bm25.add([r.seq for r in rows], [r.text for r in rows])
        for r in rows:
            self.chunk_file[r.seq] = r.file_id
        self.last_seq = max(self.last_seq, int(ids.max()))

    def _exact_vectors(self, after_seq: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the exact index's vectors and ids with seq > after_seq (ids are added in increasing order)."""
        ids = faiss_module().vector_to_array(self.exact.id_map).astype(np.int64)
        start = int(np.searchsorted(ids, after_seq, side="right"))
        inner = faiss_module().downcast_index(self.exact.index)
        vecs = inner.reconstruct_n(start, len(ids) - start) if len(ids) > start else np.zeros((0, self.dim))
        return np.asarray(vecs, dtype=np.float32), ids[start:]

    def _set_ann(self, ann: Any, ann_seq: int) -> None:
        self.ann, self.ann_seq = ann, ann_seq
        self.tail = new_exact_index(self.dim)
        vecs, ids = self._exact_vectors(ann_seq)
        if len(ids):
            self.tail.add_with_ids(vecs, ids)

    def sync(self, db: Database, add_version: int, del_version: int) -> None:
        """Bring the index up to the store's versions (blocking; call from a worker thread)."""
        with self.lock:
            if (add_version, del_version) == self.versions:
                return
            if del_version != self.versions[1]:
                self._reset()
            snapshot = self._load_snapshot(del_version) if self.last_seq == 0 else None
            q = (sa.select(chunks.c.seq, chunks.c.file_id, chunks.c.text, chunks.c.embedding)
                 .where(chunks.c.vector_store_id == self.store_id, chunks.c.seq > self.last_seq)
                 .order_by(chunks.c.seq))
            with db.connect() as c:  # in parts: 100k rows of 384-d embeddings are ~200 MB at once
                for part in c.execute(q.execution_options(yield_per=4096)).partitions():
                    self._add(part)
            if snapshot is not None:
                self._adopt_snapshot(*snapshot)
            self.versions = (add_version, del_version)
            self._maybe_build()

    def _load_snapshot(self, del_version: int) -> tuple[Any, Any] | None:
        if self.builder is None or self.ann_kind is None:
            return None
        return self.builder.load(self.store_id, self.ann_kind, self.dim, self.cfg, del_version)

    def _adopt_snapshot(self, meta: Any, ann: Any) -> None:
        """Use a loaded snapshot if it holds exactly the store's chunks up to its last_seq (a store deleted and
        created again under the same id would not)."""
        ids = faiss_module().vector_to_array(self.exact.id_map)
        if int(np.searchsorted(ids, meta.last_seq, side="right")) == meta.ntotal == ann.ntotal:
            self._set_ann(self._gpu.place(ann, self.ann_kind), meta.last_seq)

    def _maybe_build(self) -> None:
        """Start a background build when the store is past the threshold and has no approximate index, or its
        tail outgrew `rebuild_fraction` of it. Called with the lock held."""
        if self.builder is None or self.ann_kind is None or self._building:
            return
        if self.exact.ntotal < int(self.cfg.get("train_min_vectors", 10000)):
            return
        fraction = float(self.cfg.get("rebuild_fraction", DEFAULT_REBUILD_FRACTION))
        if self.ann is not None and self.tail.ntotal <= fraction * self.ann.ntotal:
            return
        vecs, ids = self._exact_vectors(0)
        self._building = True
        self._ready.clear()
        generation = self.generation
        job = AnnBuildJob(self.store_id, self.ann_kind, self.dim, self.cfg, vecs, ids, self.versions[1])
        self.builder.submit(job, lambda ann, seq: self._install(generation, ann, seq), self._build_done)

    def _install(self, generation: int, ann: Any, ann_seq: int) -> bool:
        with self.lock:
            if generation != self.generation:
                return False  # chunks were deleted meanwhile: the next sync builds again
            self._set_ann(self._gpu.place(ann, self.ann_kind), ann_seq)
            return True

    def _build_done(self, retry: bool) -> None:
        """A build ended: `retry` (it did not fail) checks at once whether another is due (chunks were deleted or
        the tail outgrew the new index while it was built)."""
        with self.lock:
            self._building = False
            if retry:
                self._maybe_build()
            if not self._building:
                self._ready.set()

    def wait_for_build(self, timeout: float | None = None) -> bool:
        """Block until no background build is running (True) or `timeout` passes (False)."""
        return self._ready.wait(timeout)

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
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        use_threads(int(self.cfg.get("search_threads", 1)))
        with self.lock:
            if self.exact.ntotal == 0:
                return []
            allowed = self._allowed(files, seqs)
            if allowed is not None and not allowed:
                return []
            if allowed is None and self.ann is not None:
                found = [self.ann.search(queries, min(k, self.ann.ntotal),
                                         params=search_params(self.ann_kind, self.cfg, k))]
                if self.tail.ntotal:
                    found.append(self.tail.search(queries, min(k, self.tail.ntotal)))
            else:
                params = None
                if allowed is not None:
                    params = faiss_module().SearchParameters()
                    params.sel = faiss_module().IDSelectorBatch(np.array(sorted(allowed), dtype=np.int64))
                found = [self.exact.search(queries, min(k, self.exact.ntotal), params=params)]
        best: dict[int, float] = {}
        for scores, ids in found:
            for i, s in zip(ids.ravel().tolist(), scores.ravel().tolist(), strict=True):
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
