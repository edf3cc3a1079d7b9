"""Vector IO: FAISS indexes per vector store, file ingestion, on the VectorIO deployment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from serve.config.base import DeploymentOptions, _Strict, default_deployment


class IndexConfig(_Strict):
    """FAISS index per vector store: exact inner product, or IVF / HNSW for large stores."""

    type: Literal["flat", "ivf", "hnsw"] = "flat"
    nlist: int = Field(default=1024, ge=1)  # ivf: clusters (trained once the store holds train_min_vectors)
    nprobe: int = Field(default=16, ge=1)
    train_min_vectors: int = Field(default=10000, ge=100)
    m: int = Field(default=32, ge=4, le=128)  # hnsw: neighbours per node
    ef_construction: int = Field(default=200, ge=8)
    ef_search: int = Field(default=128, ge=8)
    device: str = "cpu"  # "cuda" moves indexes to the GPU through faiss-gpu
    # keyword search (BM25): the language words are stemmed in (PyStemmer) and stop words removed for (bm25s)
    keyword_language: str = "english"

    @field_validator("keyword_language")
    @classmethod
    def _known_language(cls, v: str) -> str:
        from deployments.vector_io.bm25 import check_language

        return check_language(v)


class VectorIOConfig(_Strict):
    enabled: bool = True
    default_embedding_model: str | None = None  # defaults to the first embedding model
    index: IndexConfig = Field(default_factory=IndexConfig)
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    # a file whose ingesting replica stopped renewing for this long is ingested again by another replica
    ingest_lease_timeout_s: float = Field(default=30.0, gt=0)
    # attaching files (one, a batch, or file_ids at store creation) answers once their ingestion ends, or after this
    # long with `in_progress` (ingestion goes on; clients poll); 0 answers at once
    attach_wait_s: float = Field(default=5.0, ge=0)
    deployment: DeploymentOptions = default_deployment(num_cpus=0.2)
