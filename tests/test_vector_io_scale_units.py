"""Vector IO at scale, without Ray: the query/chunk batcher, approximate indexes built in the background and their
snapshots in the blob store (a restart loads them; stale ones are caught up or rebuilt), batched ingestion."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import sqlalchemy as sa

import deployments.vector_io.tables  # noqa: F401  (registers the tables)
from deployments.vector_io.ann_builder import AnnBuilder
from deployments.vector_io.batcher import AsyncBatcher, BatchedEmbedder
from deployments.vector_io.index import VectorStoreIndex
from deployments.vector_io.index_snapshots import IndexSnapshots, snapshot_key
from deployments.vector_io.tables import chunks
from serve.storage import Database, LocalBlobStore

DIM = 16
CFG = {"type": "hnsw", "train_min_vectors": 100, "m": 8, "ef_construction": 40, "ef_search": 64}

# ---- the batcher -----------------------------------------------------------------------------------------------


def test_concurrent_submits_share_calls_and_get_their_own_results():
    calls: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0.02)
        return [x * 10 for x in items]

    async def go() -> list[list[int]]:
        batcher = AsyncBatcher(run, max_batch_size=8)
        first = asyncio.ensure_future(batcher.submit([0, 100]))
        await asyncio.sleep(0.005)  # a lone search: its call goes out
        return [await first, *await asyncio.gather(*[batcher.submit([i, i + 100]) for i in range(1, 12)])]

    results = asyncio.run(go())
    assert results == [[i * 10, (i + 100) * 10] for i in range(12)]
    assert calls[0] == [0, 100]  # the first goes out at once: no wait at c=1
    assert len(calls) < 12 and max(len(c) for c in calls) <= 8  # the rest queued behind it, in batches of <= 8
    assert sorted(x for c in calls for x in c) == sorted(x for i in range(12) for x in (i, i + 100))


def test_busy_wait_holds_calls_open_only_under_concurrency():
    calls: list[tuple[float, list[int]]] = []

    async def run(items: list[int]) -> list[int]:
        calls.append((asyncio.get_running_loop().time(), items))
        await asyncio.sleep(0.01)
        return items

    async def go() -> list[float]:
        batcher = AsyncBatcher(run, max_batch_size=64, busy_wait_s=0.05)
        lone = []
        for i in range(3):  # one caller at a time: each call goes at once
            t = asyncio.get_running_loop().time()
            await batcher.submit([i])
            lone.append(calls[-1][0] - t)
        await asyncio.gather(batcher.submit([10]), batcher.submit([11]))  # two at once: one call, at once
        burst = [asyncio.ensure_future(batcher.submit([20]))]  # busy now: this call is held open ...
        await asyncio.sleep(0.02)
        burst += [asyncio.ensure_future(batcher.submit([21 + i])) for i in range(3)]  # ... so these join it
        await asyncio.gather(*burst)
        return lone

    lone = asyncio.run(go())
    assert max(lone) < 0.02  # no 50 ms wait for a lone caller
    assert [c for _, c in calls][-1] == [20, 21, 22, 23]


def test_a_failing_batch_fails_each_of_its_callers_and_the_batcher_goes_on():
    async def run(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        if -1 in items:
            raise ValueError("bad item")
        return items

    async def go() -> tuple[list, list[int]]:
        batcher = AsyncBatcher(run, max_batch_size=4)
        first = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.002)  # goes alone; the next two share a call
        failed = await asyncio.gather(first, batcher.submit([-1]), batcher.submit([2]), return_exceptions=True)
        return failed, await batcher.submit([3])

    failed, after = asyncio.run(go())
    assert failed[0] == [1]
    assert isinstance(failed[1], ValueError) and isinstance(failed[2], ValueError)
    assert after == [3]


def test_batched_embedder_splits_long_lists_and_keeps_order():
    sizes: list[int] = []

    async def embed(model_id: str, texts: list[str]) -> np.ndarray:
        sizes.append(len(texts))
        return np.array([[float(t)] for t in texts], dtype=np.float32)

    async def go() -> np.ndarray:
        embedder = BatchedEmbedder(embed, max_batch_size=4, max_in_flight=2)
        return await embedder("m", [str(i) for i in range(10)])

    out = asyncio.run(go())
    assert out[:, 0].tolist() == list(range(10)) and max(sizes) <= 4


# ---- approximate indexes in the background, snapshots ----------------------------------------------------------


def unit_vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield database
    database.dispose()


@pytest.fixture
def snapshots(tmp_path) -> IndexSnapshots:
    return IndexSnapshots(LocalBlobStore(tmp_path / "blobs"))


def insert(db: Database, vecs: np.ndarray, file_id: str = "f") -> None:
    with db.begin() as c:
        c.execute(sa.insert(chunks), [{"vector_store_id": "s", "file_id": file_id, "chunk_index": i, "text": f"t{i}",
                                       "embedding": v.tobytes(), "metadata": {}} for i, v in enumerate(vecs)])


class GatedBuilder(AnnBuilder):
    """Builds only once the test opens the gate: what searches do while a build runs."""

    def __init__(self, snapshots: IndexSnapshots | None):
        super().__init__(snapshots)
        self.gate = threading.Event()

    def _run(self, job, install, done) -> None:
        self.gate.wait(30)
        super()._run(job, install, done)


def test_searches_stay_exact_until_the_background_build_is_ready(db, snapshots):
    vecs = unit_vectors(300, 0)
    insert(db, vecs)
    builder = GatedBuilder(snapshots)
    idx = VectorStoreIndex("s", DIM, CFG, builder)
    idx.sync(db, 1, 0)
    assert idx.kind == "flat" and not idx.wait_for_build(0)  # building; the sync did not wait for it
    assert idx.vector_search(vecs[5:6], 1, None)[0][0] == 6  # exact meanwhile (seq = row + 1)
    builder.gate.set()
    assert idx.wait_for_build(30) and idx.kind == "hnsw" and builder.builds == 1
    assert idx.vector_search(vecs[5:6], 1, None)[0][0] == 6
    assert snapshots.blobs.exists(snapshot_key("s", "hnsw"))


def test_small_stores_build_nothing(db, snapshots):
    insert(db, unit_vectors(50, 0))
    builder = AnnBuilder(snapshots)
    idx = VectorStoreIndex("s", DIM, CFG, builder)
    idx.sync(db, 1, 0)
    assert idx.wait_for_build(5) and idx.kind == "flat" and builder.builds == 0


def test_a_restarted_replica_loads_the_snapshot_instead_of_building(db, snapshots):
    vecs = unit_vectors(300, 0)
    insert(db, vecs)
    first = VectorStoreIndex("s", DIM, CFG, AnnBuilder(snapshots))
    first.sync(db, 1, 0)
    assert first.wait_for_build(30) and first.kind == "hnsw"
    queries = unit_vectors(20, 1)
    before = [first.vector_search(q[None], 5, None) for q in queries]

    restarted = AnnBuilder(IndexSnapshots(LocalBlobStore(snapshots.blobs.root)))  # a new replica, same blob store
    idx = VectorStoreIndex("s", DIM, CFG, restarted)
    idx.sync(db, 1, 0)
    assert idx.kind == "hnsw" and idx.ann_seq == 300  # ready at once, from the snapshot
    assert idx.wait_for_build(5) and restarted.builds == 0
    assert [idx.vector_search(q[None], 5, None) for q in queries] == before


def test_a_snapshot_older_than_new_inserts_is_caught_up(db, snapshots):
    insert(db, unit_vectors(300, 0))
    first = VectorStoreIndex("s", DIM, CFG, AnnBuilder(snapshots))
    first.sync(db, 1, 0)
    assert first.wait_for_build(30)
    newer = unit_vectors(20, 2)
    insert(db, newer, "g")  # written after the snapshot (seqs 301..320)

    builder = AnnBuilder(snapshots)
    idx = VectorStoreIndex("s", DIM, CFG, builder)
    idx.sync(db, 2, 0)
    assert idx.kind == "hnsw" and idx.ann_seq == 300 and idx.tail.ntotal == 20
    assert idx.wait_for_build(5) and builder.builds == 0  # 20 new chunks stay under rebuild_fraction (0.2)
    hit = idx.vector_search(newer[3:4], 1, None)[0]
    assert hit[0] == 304 and hit[1] == pytest.approx(1.0, abs=1e-4)  # the new chunk is found (from the tail)
    assert idx.vector_search(newer[3:4], 3, {"g"})[0][0] == 304  # filtered searches are exact


def test_a_growing_store_rebuilds_in_the_background(db, snapshots):
    insert(db, unit_vectors(300, 0))
    builder = AnnBuilder(snapshots)
    idx = VectorStoreIndex("s", DIM, CFG, builder)
    idx.sync(db, 1, 0)
    assert idx.wait_for_build(30) and builder.builds == 1
    insert(db, unit_vectors(100, 3), "g")  # past rebuild_fraction of 300
    idx.sync(db, 2, 0)
    assert idx.wait_for_build(30) and builder.builds == 2 and idx.ann_seq == 400 and idx.tail.ntotal == 0


def test_a_snapshot_from_before_a_deletion_is_not_used(db, snapshots):
    vecs = unit_vectors(300, 0)
    insert(db, vecs[:150], "keep")
    insert(db, vecs[150:], "gone")
    first = VectorStoreIndex("s", DIM, CFG, AnnBuilder(snapshots))
    first.sync(db, 2, 0)
    assert first.wait_for_build(30)
    with db.begin() as c:
        c.execute(chunks.delete().where(chunks.c.file_id == "gone"))
    insert(db, unit_vectors(60, 4), "more")  # still past train_min_vectors: a fresh build

    builder = AnnBuilder(snapshots)
    idx = VectorStoreIndex("s", DIM, CFG, builder)
    idx.sync(db, 3, 1)  # del_version moved on: the snapshot is stale
    assert idx.wait_for_build(30) and builder.builds == 1 and idx.kind == "hnsw"
    found = {seq for q in vecs[150:160] for seq, _ in idx.vector_search(q[None], 10, None)}
    with db.connect() as c:
        live = {r.seq for r in c.execute(sa.select(chunks.c.seq))}  # (sqlite hands the deleted seqs out again)
    assert found and found <= live and all(idx.chunk_file[s] in ("keep", "more") for s in found)
    meta, _ = snapshots.load("s", "hnsw")
    assert meta.del_version == 1 and meta.ntotal == 210  # the new build replaced the stale snapshot


def test_changed_build_settings_ignore_the_snapshot(db, snapshots):
    insert(db, unit_vectors(300, 0))
    first = VectorStoreIndex("s", DIM, CFG, AnnBuilder(snapshots))
    first.sync(db, 1, 0)
    assert first.wait_for_build(30)
    builder = AnnBuilder(snapshots)
    idx = VectorStoreIndex("s", DIM, {**CFG, "m": 16}, builder)
    idx.sync(db, 1, 0)
    assert idx.wait_for_build(30) and builder.builds == 1


# ---- ingestion: chunks of several files share embedding calls ----------------------------------------------------


def test_ingestion_batches_chunks_across_files(tmp_path):
    from deployments.vector_io.files import FileService
    from deployments.vector_io.store import VectorStoreService
    from serve.protocol.vector_io import CreateVectorStoreRequest, FileBatchRequest
    from tests.fake_embedding import MODEL, embed, model_info

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    files = FileService(db, LocalBlobStore(tmp_path / "blobs"), max_bytes=1 << 20)
    calls: list[int] = []

    async def counting_embed(model_id: str, texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        await asyncio.sleep(0.05)  # a model call takes time: chunks of other files queue meanwhile
        return await embed(model_id, texts)

    async def go() -> tuple[dict, int]:
        stores = VectorStoreService(db, files, BatchedEmbedder(counting_embed, 64), {MODEL: model_info(12)}, MODEL,
                                    {"type": "flat"}, max_concurrent_ingests=8)
        ids = [files.create(f"doc{i}.txt", "assistants", " ".join(f"w{i}x{j}" for j in range(60)).encode())["id"]
               for i in range(12)]
        store = await stores.create_store(CreateVectorStoreRequest(name="s"))
        await stores.create_batch(store["id"], FileBatchRequest(file_ids=ids))
        while stores._tasks:
            await asyncio.gather(*list(stores._tasks))
        with db.connect() as c:
            n = c.execute(sa.select(sa.func.count()).select_from(chunks)).scalar()
        # first attaches delete no chunks: replicas' indexes (and approximate ones) are appended to, not reset
        assert stores._store_row(store["id"]).del_version == 0
        return await stores.get_store(store["id"]), n

    store, n_chunks = asyncio.run(go())
    db.dispose()
    assert store["file_counts"]["completed"] == 12
    per_file = n_chunks // 12
    assert n_chunks == 12 * per_file and per_file > 1
    assert sum(calls) == n_chunks and max(calls) <= 64
    assert len(calls) < 12 and max(calls) > per_file  # fewer calls than files: files shared them


def test_a_batch_call_runs_in_its_first_callers_context():
    """Each call runs in the context of the first request it serves (its trace), not the context of whichever
    request started the batcher."""
    import asyncio
    import contextvars

    from deployments.vector_io.batcher import AsyncBatcher

    who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="none")
    seen: list[str] = []

    async def run(items):
        seen.append(who.get())
        return items

    async def scenario():
        batcher = AsyncBatcher(run)

        async def caller(name: str):
            who.set(name)
            return await batcher.submit([name])

        assert await caller("first") == ["first"]
        assert await caller("second") == ["second"]

    asyncio.run(scenario())
    assert seen == ["first", "second"]


# ---- the embedding model's forward passes ----------------------------------------------------------------------

def test_embedding_passes_go_longest_first_and_give_sentence_transformers_vectors(monkeypatch):
    import torch

    from deployments.vector_io import embedding_model
    from deployments.vector_io.embedding_model import EmbeddingModel, piece_bounds

    assert piece_bounds(130) == [(0, 64), (64, 128), (128, 130)] and piece_bounds(0) == []
    monkeypatch.setattr(embedding_model, "MAX_PIECE", 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the model keeps the setting it was made under: 2, so one thread is a choice
    try:
        model = EmbeddingModel("all-MiniLM-L6-v2")
    finally:
        torch.set_num_threads(threads)
    assert model.threads == 2
    texts = [" ".join(["word"] * n) for n in (1, 7, 40, 300, 3, 90, 12)]
    passes: list[tuple[tuple[int, int], int]] = []  # (input shape, torch threads)
    forward = model.model.forward
    model.model.forward = lambda feats: passes.append((tuple(feats["input_ids"].shape), torch.get_num_threads())) \
        or forward(feats)
    vecs, counts = model.encode_with_counts(texts)
    # longest first, MAX_PIECE texts a pass, each padded to its longest (a multiple of 8, at most max_seq_length)
    assert [shape for shape, _ in passes] == [(4, model.max_seq_length), (3, 16)]
    # the small pass (48 tokens) runs on one thread, the large one on all of them; each pass restores the setting
    assert [n for _, n in passes] == [2, 1] and torch.get_num_threads() == 2
    torch.set_num_threads(threads)
    # usage counts each text as the model read it: special tokens in, truncated to max_seq_length
    assert counts == [len(model.tokenizer(t, truncation=True, max_length=model.max_seq_length)["input_ids"])
                      for t in texts]
    assert counts[0] == 3 and counts[3] == model.max_seq_length
    expected = model.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(vecs, expected, atol=1e-5)  # padding is masked: the same vectors, in input order


def test_a_batcher_works_from_one_event_loop_after_another():
    async def run(items: list[int]) -> list[int]:
        return [x + 1 for x in items]

    batcher = AsyncBatcher(run)  # e.g. the Embeddings class in an offline batch actor, one asyncio.run per call
    assert asyncio.run(batcher.submit([1, 2])) == [2, 3]
    assert asyncio.run(batcher.submit([5])) == [6]
