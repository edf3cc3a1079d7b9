"""A tiny deterministic embedding model for storage tests that need no model: hashed bag of words.

Texts sharing words get similar vectors, so vector search ranks sensibly; the word "tokenizer" gives the character
offsets chunking needs. Hashing is crc32 (stable across processes, unlike `hash`).
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from deployments.vector_io.store import EmbeddingModelInfo

DIM = 256
MODEL = "hash-bow-256"
_WORD = re.compile(r"\w+")


class WordTokenizer:
    """The slice of the HF tokenizer call that chunk_text uses: one token per run of non-space characters."""

    def __call__(self, text: str, **_: object) -> dict[str, list[tuple[int, int]]]:
        return {"offset_mapping": [m.span() for m in re.finditer(r"\S+", text)]}


def embed_texts(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            out[i, zlib.crc32(word.encode()) % DIM] += 1.0
        norm = np.linalg.norm(out[i])
        if norm:
            out[i] /= norm
    return out


async def embed(model_id: str, texts: list[str]) -> np.ndarray:
    assert model_id == MODEL
    return embed_texts(texts)


def model_info(max_tokens: int = 12) -> EmbeddingModelInfo:
    """`max_tokens` is the model's window: auto chunking cuts files into windows of this many words."""
    return EmbeddingModelInfo(model_id=MODEL, dimension=DIM, max_tokens=max_tokens, tokenizer=WordTokenizer())
