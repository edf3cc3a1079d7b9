"""BM25 keyword ranking over a store's chunks: an in-memory inverted index, updated as chunks arrive."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


class BM25Index:
    def __init__(self, k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.postings: dict[str, dict[int, int]] = defaultdict(dict)  # term -> {chunk id: term frequency}
        self.lengths: dict[int, int] = {}
        self.total_len = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, chunk_id: int, text: str) -> None:
        terms = tokenize(text)
        self.lengths[chunk_id] = len(terms)
        self.total_len += len(terms)
        for term, tf in Counter(terms).items():
            self.postings[term][chunk_id] = tf

    def search(self, query: str, k: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        n = len(self.lengths)
        if not n:
            return []
        avg = self.total_len / n
        scores: dict[int, float] = defaultdict(float)
        for term in set(tokenize(query)):
            posting = self.postings.get(term)
            if not posting:
                continue
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for cid, tf in posting.items():
                if allowed is not None and cid not in allowed:
                    continue
                dl = self.lengths[cid]
                scores[cid] += idf * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * dl / avg))
        return sorted(scores.items(), key=lambda kv: -kv[1])[:k]
