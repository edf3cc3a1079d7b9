"""SQL work of one vector-store search, without Ray or a model: statements and writes per search, and latency.

A store of --files attached files (each with attributes) and --chunks chunks lives in a fresh sqlite database;
queries go through VectorStoreService.search (the OpenAI search route's service) with the tests' hashed
bag-of-words embedding, in vector and keyword mode, after one warm-up search (the index is built then).

    python benchmarks/vector_search_sql_bench.py --files 1000 --chunks 10000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deployments.vector_io.tables  # noqa: E402,F401  (registers the tables)
from deployments.vector_io.files import FileService  # noqa: E402
from deployments.vector_io.store import VectorStoreService  # noqa: E402
from deployments.vector_io.tables import chunks, vector_store_files, vector_stores  # noqa: E402
from serve.protocol.vector_io import CreateVectorStoreRequest, SearchRequest  # noqa: E402
from serve.storage import Database, LocalBlobStore  # noqa: E402
from tests.fake_embedding import MODEL, embed, embed_texts, model_info  # noqa: E402

WORDS = ("river mountain engine battery protein galaxy violin harbor glacier copper orchard lantern algorithm "
         "cathedral compass meadow volcano satellite bakery tide forest circuit archive falcon desert").split()


def fill(db: Database, store_id: str, n_files: int, n_chunks: int) -> None:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 40)) for _ in range(n_chunks)]
    vecs = embed_texts(texts)
    with db.begin() as c:
        c.execute(sa.insert(vector_store_files), [
            {"vector_store_id": store_id, "file_id": f"file-{i}", "created_at": 0, "status": "completed",
             "attributes": {"topic": WORDS[i % len(WORDS)], "year": 2000 + i % 25}, "chunking": {},
             "usage_bytes": 0} for i in range(n_files)])
        c.execute(sa.insert(chunks), [
            {"vector_store_id": store_id, "file_id": f"file-{i % n_files}", "chunk_index": i, "text": t,
             "embedding": v.tobytes(), "metadata": {}} for i, (t, v) in enumerate(zip(texts, vecs, strict=True))])
        c.execute(vector_stores.update().where(vector_stores.c.id == store_id)
                  .values(add_version=vector_stores.c.add_version + 1))


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        files = FileService(db, LocalBlobStore(Path(tmp) / "blobs"), max_bytes=1 << 20)
        service = VectorStoreService(db, files, embed, {MODEL: model_info()}, MODEL, {"type": "flat"})
        store_id = (await service.create_store(CreateVectorStoreRequest(name="bench")))["id"]
        fill(db, store_id, args.files, args.chunks)
        statements = {"all": 0, "writes": 0}

        @sa.event.listens_for(db.engine, "before_cursor_execute")
        def count(conn, cursor, statement, *_):  # noqa: ANN001
            statements["all"] += 1
            statements["writes"] += statement.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))

        rng = np.random.default_rng(1)
        for mode in ("vector", "keyword"):
            await service.search(store_id, SearchRequest(query="warm up", search_mode=mode))
            statements.update(all=0, writes=0)
            times = []
            for _ in range(args.queries):
                q = " ".join(rng.choice(WORDS, 3))
                t = time.perf_counter()
                page = await service.search(store_id, SearchRequest(query=q, search_mode=mode, max_num_results=10))
                times.append((time.perf_counter() - t) * 1000)
                assert page["data"] and page["data"][0]["attributes"]
            print(f"{mode:8s} files={args.files} chunks={args.chunks}: p50 {statistics.median(times):.2f} ms, "
                  f"mean {statistics.fmean(times):.2f} ms, SQL statements/search {statements['all'] / args.queries:.1f}"
                  f", writes/search {statements['writes'] / args.queries:.2f}")
        db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=200)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
