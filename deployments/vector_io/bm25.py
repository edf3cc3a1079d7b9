"""BM25 keyword ranking over a store's chunks: bm25s (Lucene's BM25) on words stemmed by PyStemmer.

Text is split into words of two or more word characters, lowercased, stripped of the language's stop words
(bm25s's lists, for the languages it has one) and stemmed (Snowball, PyStemmer): "running" finds "runs" and
"indexes" finds "index". A bm25s index is built over a fixed corpus while chunks arrive over time, so each
chunk's terms are kept as it is added and the bm25s index is rebuilt from them on the first search after a
change (0.9 s for 10k chunks of ~200 words on a 2-core box, in bm25s's per-chunk Python loops; searches on a
built index take ~0.1 ms: benchmarks/results/bm25-rebuild.md).
Deletions rebuild too: they reset the store's whole VectorStoreIndex (index.py).

Scores: a chunk's Lucene BM25 score (k1=1.5, b=0.75) is the sum over the query's distinct terms of
idf(t) * tf / (tf + k1 * (1 - b + b * len / avg_len)), idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)). `search`
divides it by a reference score, that of a chunk of average length holding every query term once (the sum of
idf(t) / (1 + k1) over the query's terms; a term no chunk holds counts with df = 0), and caps it at 1. So 1 means
"all of the query's words, as a typical chunk holds them", 0.5 about half of the query's idf weight: a scale a
score_threshold can use in any store, as comparable across stores as BM25 allows (idf comes from each store's
own chunks). Ranking uses the raw scores, so chunks capped at 1 stay in BM25 order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_LANGUAGE = "english"
# the languages bm25s ships stop words for (others are stemmed with no stop words removed)
STOPWORD_LANGUAGES = frozenset({"danish", "dutch", "english", "french", "german", "italian", "norwegian",
                                "portuguese", "russian", "spanish", "swedish", "turkish"})


def keyword_languages() -> list[str]:
    """The languages keyword search can stem (PyStemmer's Snowball algorithms)."""
    import Stemmer

    return sorted(Stemmer.algorithms())


def check_language(language: str) -> str:
    if language not in keyword_languages():
        raise ValueError(f"unknown keyword search language {language!r}; one of {', '.join(keyword_languages())}")
    return language


class BM25Index:
    """Keyword index of one store's chunks (ids are chunk seqs). Not thread-safe: VectorStoreIndex holds a lock
    around every call (a PyStemmer stemmer may not be shared between threads either)."""

    def __init__(self, language: str = DEFAULT_LANGUAGE, k1: float = 1.5, b: float = 0.75):
        import Stemmer

        self.language = check_language(language)
        self.k1, self.b = k1, b
        self._stemmer = Stemmer.Stemmer(language)
        self.vocab: dict[str, int] = {}  # stemmed term -> term id (grows; a deletion resets the whole index)
        self.terms: dict[int, list[int]] = {}  # chunk id -> its terms' ids
        self._built: tuple[Any, np.ndarray, np.ndarray] | None = None  # (bm25s.BM25, chunk ids, df); None: stale

    def __len__(self) -> int:
        return len(self.terms)

    def tokenize(self, texts: list[str], allow_empty: bool = True) -> list[list[str]]:
        import bm25s

        stopwords = self.language if self.language in STOPWORD_LANGUAGES else None
        return bm25s.tokenize(texts, stopwords=stopwords, stemmer=self._stemmer, return_ids=False,
                              show_progress=False, allow_empty=allow_empty)

    def add(self, chunk_ids: list[int], texts: list[str]) -> None:
        # a chunk with no words becomes [""]: bm25s's own placeholder, which no query term matches
        vocab = self.vocab
        for cid, terms in zip(chunk_ids, self.tokenize(texts, allow_empty=False), strict=True):
            self.terms[cid] = [vocab.setdefault(t, len(vocab)) for t in terms]
        self._built = None

    def _build(self) -> tuple[Any, np.ndarray, np.ndarray]:
        import bm25s

        retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene", csc_backend="scipy")
        # term ids, not strings: bm25s skips mapping every token again (a third of a rebuild's time)
        retriever.index((list(self.terms.values()), dict(self.vocab)), show_progress=False)
        ids = np.fromiter(self.terms, dtype=np.int64, count=len(self.terms))
        # the score matrix is term-major (CSC): a term's column holds one score per chunk containing it
        df = np.diff(np.asarray(retriever.scores["indptr"]))
        return retriever, ids, df

    def _idf(self, df: int, n: int) -> float:
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str, k: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """[(chunk id, score in (0, 1])] best first: the chunks sharing a term with the query."""
        query_terms = list(dict.fromkeys(self.tokenize([query])[0]))
        if not self.terms or not query_terms or k <= 0:
            return []
        if self._built is None:
            self._built = self._build()
        retriever, ids, df = self._built
        n = len(ids)
        term_ids = retriever.get_tokens_ids(query_terms)
        if not term_ids:
            return []
        idf = sum(self._idf(int(df[t]), n) for t in term_ids) + (len(query_terms) - len(term_ids)) * self._idf(0, n)
        reference = idf / (1 + self.k1)
        scores = retriever.get_scores(term_ids)
        if allowed is not None:
            scores = np.where(np.isin(ids, np.fromiter(allowed, dtype=np.int64, count=len(allowed))), scores, 0.0)
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        hits = hits[np.argsort(-scores[hits], kind="stable")]
        return [(int(ids[i]), min(1.0, float(scores[i]) / reference)) for i in hits]
