"""Background builds of approximate indexes, and their snapshots (one builder per VectorIO replica).

A store whose index type is hnsw or ivf is searched exactly until its approximate index is ready: the build runs
on this builder's worker thread (FAISS releases the GIL, so searches go on), then the index is swapped in and saved
as a snapshot (index_snapshots.py) for the next replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from deployments.vector_io.ann_index import build_ann, deserialize, serialize
from deployments.vector_io.index_snapshots import IndexSnapshot, IndexSnapshots, index_config_key

logger = logging.getLogger("stackserve.vector_io")


@dataclass
class AnnBuildJob:
    """The vectors to build from, copied out of the exact index (so the build needs no lock)."""

    store_id: str
    kind: str
    dim: int
    cfg: dict[str, Any]
    vectors: np.ndarray  # [n, dim] float32
    ids: np.ndarray  # [n] int64 chunk seqs, increasing
    del_version: int


class AnnBuilder:
    """Runs approximate-index builds off the search path and keeps their snapshots (None: no snapshots)."""

    def __init__(self, snapshots: IndexSnapshots | None, workers: int = 1):
        self.snapshots = snapshots
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ann-build")
        self.builds = 0  # builds finished (tests: a restart that loads a snapshot builds nothing)
        self._count_lock = threading.Lock()

    def submit(self, job: AnnBuildJob, install: Callable[[Any, int], bool],
               done: Callable[[bool], None]) -> Future:
        """Build `job` in the background; `install(index, last_seq)` swaps it in (False: the store changed under
        it, drop it); `done(ok)` runs after, ok False when the build failed."""
        return self._pool.submit(self._run, job, install, done)

    def _run(self, job: AnnBuildJob, install: Callable[[Any, int], bool], done: Callable[[bool], None]) -> None:
        ok = False
        try:
            index = build_ann(job.kind, job.dim, job.vectors, job.ids, job.cfg)
            with self._count_lock:
                self.builds += 1
            last_seq = int(job.ids[-1])
            data = serialize(index) if self.snapshots is not None else None  # before install may move it to a GPU
            ok = True
            if install(index, last_seq):
                self._save(job, index, last_seq, data)
        except Exception:
            logger.exception("building the %s index of %s failed; searches stay exact", job.kind, job.store_id)
        finally:
            done(ok)

    def _save(self, job: AnnBuildJob, index: Any, last_seq: int, data: np.ndarray | None) -> None:
        if self.snapshots is None or data is None:
            return
        meta = IndexSnapshot(store_id=job.store_id, kind=job.kind, del_version=job.del_version, last_seq=last_seq,
                             config_key=index_config_key(job.kind, job.dim, job.cfg), ntotal=int(index.ntotal))
        try:
            self.snapshots.save(meta, data)
        except Exception:  # the index serves; the next replica builds its own
            logger.exception("saving the %s index snapshot of %s failed", job.kind, job.store_id)

    def load(self, store_id: str, kind: str, dim: int, cfg: dict[str, Any],
             del_version: int) -> tuple[IndexSnapshot, Any] | None:
        """The store's saved index if it was built with these settings and nothing was deleted since."""
        if self.snapshots is None:
            return None
        found = self.snapshots.load(store_id, kind)
        if found is None:
            return None
        meta, data = found
        if meta.config_key != index_config_key(kind, dim, cfg) or meta.del_version != del_version:
            return None  # stale: rebuilt in the background (and saved over) once the store is loaded
        try:
            return meta, deserialize(data)
        except RuntimeError:
            logger.warning("ignoring a corrupt %s index snapshot of %s", kind, store_id)
            return None

    def drop(self, store_id: str) -> None:
        if self.snapshots is not None:
            self.snapshots.drop(store_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
