"""Keyword index cost at store scale, without Ray: tokenizing + stemming chunks as they are added, the lazy
bm25s rebuild that the first search after a change pays, and a search on a built index.

Chunks are ~200 words of real English (sentences of tests/data/corpus, shuffled), so stemming and stop words
see natural text. Each timing is the best of --repeat runs (this box is shared and noisy).

    python benchmarks/bm25_bench.py --chunks 10000 --out benchmarks/results/bm25-rebuild.md
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.engine_compare import hardware  # noqa: E402
from deployments.vector_io.bm25 import BM25Index  # noqa: E402
from deployments.vector_io.extract import extract_text  # noqa: E402

QUERIES = ["waggle dance of honeybees", "volcanic eruptions", "castling rules", "lighthouse lenses", "running"]


def chunks(n: int, words: int = 200, seed: int = 0) -> list[str]:
    sentences: list[str] = []
    for path in sorted((ROOT / "tests" / "data" / "corpus").iterdir()):
        text = extract_text(path.name, path.read_bytes())
        sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 3]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        picked: list[str] = []
        while sum(len(s.split()) for s in picked) < words:
            picked.append(sentences[int(rng.integers(len(sentences)))])
        out.append(" ".join(picked))
    return out


def best_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return min(times)


def measure(n: int, repeat: int) -> dict[str, float]:
    texts = chunks(n)
    idx = BM25Index()
    add_ms = best_ms(lambda: idx.add(list(range(n)), texts), repeat)

    def rebuild_and_search() -> None:
        idx.add([n], ["one more chunk about honeybees"])  # any change makes the next search rebuild
        idx.search(QUERIES[0], 10)

    rebuild_ms = best_ms(rebuild_and_search, repeat)
    search = [best_ms(lambda q=q: idx.search(q, 10), repeat) for q in QUERIES]
    return {"chunks": n, "add_ms": add_ms, "rebuild_ms": rebuild_ms, "search_ms": statistics.median(search)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="write a markdown table here")
    args = ap.parse_args()
    rows = [measure(n, args.repeat) for n in args.chunks]
    lines = ["| chunks | add (tokenize + stem), ms | rebuild + first search, ms | search (built), ms |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['chunks']} | {r['add_ms']:.0f} | {r['rebuild_ms']:.1f} | {r['search_ms']:.2f} |" for r in rows]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(f"# Keyword index (bm25s + PyStemmer) cost\n\n`python benchmarks/bm25_bench.py "
                            f"--chunks {' '.join(map(str, args.chunks))}`, best of {args.repeat}, ~200-word "
                            f"chunks.\n\n{report}\n\nHardware: {hardware()}\n")


if __name__ == "__main__":
    main()
