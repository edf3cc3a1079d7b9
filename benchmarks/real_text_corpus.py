"""A real-text embedding corpus for recall figures: chunks of the Python standard library's own source files (the
ones that ship with the interpreter running this), embedded once with all-MiniLM-L6-v2 and cached.

Chunks are 128-token windows (no overlap) of the .py files under the stdlib directory, in sorted path order, so the
corpus is the same on every machine with the same Python. Queries are held-out chunks (every `stride`-th one), not
in the indexed set. Cached as .npy under benchmarks/.cache/ (gitignored); `python -m benchmarks.real_text_corpus`
builds it ahead.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def stdlib_chunks(n: int, tokens: int = 128) -> list[str]:
    """The first `n` chunks of `tokens` MiniLM tokens of the stdlib's .py files (tests and site-packages left out)."""
    from transformers import AutoTokenizer

    from deployments.vector_io.chunking import chunk_text
    from deployments.vector_io.embedding_model import resolve_embedding_source

    tok = AutoTokenizer.from_pretrained(resolve_embedding_source(MINILM))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib).parts
        if rel[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel:
            continue
        out += [c for c in chunk_text(path.read_text(errors="ignore"), tok, tokens, 0) if len(c) > 80]
        if len(out) >= n:
            return out[:n]
    return out


def real_text_vectors(n: int, dtype: str = "float32") -> np.ndarray:
    """[n, 384] float32 unit vectors of `n` stdlib chunks, from the cache or embedded now (and cached)."""
    tag = f"v{sys.version_info.major}{sys.version_info.minor}-{dtype}"
    path = CACHE / f"stdlib-minilm-{tag}-{n}.npy"
    if path.exists():
        return np.load(path)
    for bigger in sorted(CACHE.glob(f"stdlib-minilm-{tag}-*.npy")):  # a larger cached corpus starts the same
        if int(bigger.stem.rsplit("-", 1)[1]) >= n:
            return np.load(bigger)[:n]
    from deployments.vector_io.embedding_model import EmbeddingModel

    texts = stdlib_chunks(n)
    model = EmbeddingModel(MINILM, dtype=dtype)
    t = time.perf_counter()
    vecs = np.concatenate([model.encode(texts[i:i + 256]) for i in range(0, len(texts), 256)])
    print(f"embedded {len(texts)} stdlib chunks in {time.perf_counter() - t:.0f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs.astype(np.float32))
    return vecs


def split_queries(vecs: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """(base, queries): every len/n_queries-th vector held out as a query."""
    stride = max(2, len(vecs) // n_queries)
    mask = np.zeros(len(vecs), dtype=bool)
    mask[::stride] = True
    return vecs[~mask], vecs[mask][:n_queries]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=20_000)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = p.parse_args()
    print(real_text_vectors(a.chunks, a.dtype).shape)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
