"""Vector IO: FAISS indexes per vector store, file ingestion, on the VectorIO deployment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from serve.config.base import DeploymentOptions, _Strict, default_deployment


class IndexConfig(_Strict):
    """FAISS index per vector store: exact inner product, or IVF / HNSW for large stores. An approximate index
    (ivf, hnsw) is built in the background once the store holds `train_min_vectors` chunks; searches are exact
    until it is ready. Its snapshot is kept in the blob store (`storage.blob_url`), so other and restarted replicas
    load it instead of building it (deployments/vector_io/index.py)."""

    type: Literal["flat", "ivf", "hnsw"] = "flat"
    nlist: int = Field(default=1024, ge=1)  # ivf: clusters (at most one per 39 vectors)
    nprobe: int = Field(default=64, ge=1)  # ivf: clusters searched (recall@10 >= 0.95 on real text at 64/1024)
    # hnsw and ivf: the store size from which the approximate index is built (smaller stores are searched exactly)
    train_min_vectors: int = Field(default=10000, ge=100)
    # a new approximate index is built in the background once the chunks added after the current one (searched
    # exactly meanwhile) pass this fraction of it
    rebuild_fraction: float = Field(default=0.2, gt=0, le=10)
    m: int = Field(default=32, ge=4, le=128)  # hnsw: neighbours per node
    ef_construction: int = Field(default=200, ge=8)
    ef_search: int = Field(default=128, ge=8)  # hnsw: candidates per search (recall vs speed)
    # FAISS (OpenMP) threads per search: 1, as each search holds one or a few queries (a thread team's spin-waits
    # cost more than they gain on a small busy box)
    search_threads: int = Field(default=1, ge=1, le=256)
    device: str = "cpu"  # "cuda" moves indexes to the GPU through faiss-gpu (HNSW stays on the CPU)
    # keyword search (BM25): the language words are stemmed in (PyStemmer) and stop words removed for (bm25s)
    keyword_language: str = "english"

    @field_validator("keyword_language")
    @classmethod
    def _known_language(cls, v: str) -> str:
        from deployments.vector_io.bm25 import check_language

        return check_language(v)


class QueryBatchConfig(_Strict):
    """Query embeddings of concurrent searches sent to the Embeddings deployment in one call (per replica)."""

    max_batch_size: int = Field(default=64, ge=1, le=1024)
    wait_timeout_s: float = Field(default=0.0, ge=0, le=1)  # 0: a call takes what queued while the last one ran
    max_in_flight: int = Field(default=1, ge=1, le=64)  # calls running at once
    # while searches come concurrently (the last call carried several), hold a call open this long for more
    busy_wait_s: float = Field(default=0.004, ge=0, le=1)


class IngestConfig(_Strict):
    """File ingestion: several files at once, their chunks embedded together in large batches."""

    max_concurrent_files: int = Field(default=8, ge=1, le=256)
    embed_batch_size: int = Field(default=256, ge=1, le=2048)  # chunks per embedding call, across files
    max_embed_calls: int = Field(default=2, ge=1, le=64)  # embedding calls in flight (one runs, one queues)


class VectorIOConfig(_Strict):
    enabled: bool = True
    default_embedding_model: str | None = None  # defaults to the first embedding model
    index: IndexConfig = Field(default_factory=IndexConfig)
    # approximate indexes' snapshots in the blob store (false: every replica builds its own)
    index_snapshots: bool = True
    query_batch: QueryBatchConfig = Field(default_factory=QueryBatchConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    # a file whose ingesting replica stopped renewing for this long is ingested again by another replica
    ingest_lease_timeout_s: float = Field(default=30.0, gt=0)
    # attaching files (one, a batch, or file_ids at store creation) answers once their ingestion ends, or after this
    # long with `in_progress` (ingestion goes on; clients poll); 0 answers at once
    attach_wait_s: float = Field(default=5.0, ge=0)
    deployment: DeploymentOptions = default_deployment(num_cpus=0.2)
