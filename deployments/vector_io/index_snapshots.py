"""Snapshots of approximate indexes in the graph's blob store (`storage.blob_url`, the store uploaded files live in).

Building HNSW over 100k vectors takes about a minute on 2 cores, so the replica that builds a store's approximate
index saves it; a restarted or new replica loads it (seconds) and adds only the chunks written since. One blob per
store and index kind, `vector_indexes/<sha256 of the store id>/<kind>.snapshot`: a JSON header (`IndexSnapshot`)
then the serialized FAISS index, written in one atomic put, so a reader never sees a header without its index.

A snapshot is used only for what it was built from: the same index settings (`config_key`) and no deletions since
(`del_version`); it covers the chunks up to `last_seq`, later ones are added on load.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import struct
from typing import Any

import numpy as np
from pydantic import BaseModel

from serve.storage.blobs import CHUNK_BYTES, BlobStore

logger = logging.getLogger("stackserve.vector_io")

PREFIX = "vector_indexes"
_HEADER = struct.Struct("<I")  # the JSON header's length, then the header, then the FAISS bytes


class IndexSnapshot(BaseModel):
    """What a saved approximate index covers."""

    store_id: str
    kind: str
    config_key: str  # index_config_key() of the settings it was built with
    del_version: int  # the store's del_version when built: any deletion since makes it stale
    last_seq: int  # the highest chunk seq it holds; chunks after it are added on load
    ntotal: int


def index_config_key(kind: str, dim: int, cfg: dict[str, Any]) -> str:
    """The build settings a snapshot must match (search-time knobs such as ef_search / nprobe may change freely)."""
    build = {"kind": kind, "dim": dim, **{k: cfg.get(k) for k in ("m", "ef_construction", "nlist")}}
    return json.dumps(build, sort_keys=True)


def _folder(store_id: str) -> str:
    return f"{PREFIX}/{hashlib.sha256(store_id.encode()).hexdigest()[:32]}"


def snapshot_key(store_id: str, kind: str) -> str:
    return f"{_folder(store_id)}/{kind}.snapshot"


class IndexSnapshots:
    """Save / load / drop the approximate-index snapshots of vector stores in a BlobStore. Blocking calls."""

    def __init__(self, blobs: BlobStore):
        self.blobs = blobs

    def save(self, meta: IndexSnapshot, index_bytes: np.ndarray | bytes) -> None:
        """`index_bytes`: the serialized index (faiss.serialize_index's uint8 array), streamed in 1 MiB pieces (an
        HNSW index of 100k x 384 is ~180 MB: no second whole copy)."""
        header = meta.model_dump_json().encode()
        data = memoryview(index_bytes).cast("B")
        pieces = (data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES))
        self.blobs.put(snapshot_key(meta.store_id, meta.kind), itertools.chain(
            [_HEADER.pack(len(header)) + header], pieces))

    def load(self, store_id: str, kind: str) -> tuple[IndexSnapshot, bytes] | None:
        """The snapshot and its FAISS bytes, or None when there is none (or it cannot be read)."""
        try:
            data = self.blobs.get(snapshot_key(store_id, kind))
        except FileNotFoundError:
            return None
        try:
            (n,) = _HEADER.unpack_from(data)
            meta = IndexSnapshot.model_validate_json(data[_HEADER.size:_HEADER.size + n])
        except (struct.error, ValueError):
            logger.warning("ignoring an unreadable index snapshot of %s", store_id)
            return None
        return meta, data[_HEADER.size + n:]

    def drop(self, store_id: str) -> None:
        """Every snapshot of the store (it was deleted)."""
        self.blobs.delete_prefix(f"{_folder(store_id)}/")
