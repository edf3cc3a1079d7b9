"""Replicas sharing one database, on sqlite and PostgreSQL: each "replica" is its own `Database` (engine and
connection pool) driven from its own threads, or its own process for schema creation at start."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback

import sqlalchemy as sa

import deployments.agents.tables  # noqa: F401  (register their tables on METADATA)
import deployments.vector_io.tables  # noqa: F401
from deployments.agents.store import ResponseStore
from deployments.safety.registry import ShieldRegistry, shields
from deployments.vector_io.chunking import chunk_text
from deployments.vector_io.files import FileService
from deployments.vector_io.index import VectorStoreIndex
from deployments.vector_io.store import VectorStoreService
from deployments.vector_io.tables import chunks
from serve.protocol.vector_io import AttachFileRequest, CreateVectorStoreRequest, SearchRequest
from serve.storage import Database, LocalBlobStore
from serve.storage.sql import METADATA
from tests.fake_embedding import DIM, MODEL, WordTokenizer, embed, embed_texts, model_info
from tests.test_storage_backends import BEES, settle


def replicas(url: str, blob_dir, n: int = 2) -> list[VectorStoreService]:
    out = []
    for _ in range(n):
        db = Database(url)
        out.append(VectorStoreService(db, FileService(db, LocalBlobStore(blob_dir), 1 << 20), embed,
                                      {MODEL: model_info()}, MODEL, {"type": "flat"}))
    return out


def in_threads(target, arg_lists: list[tuple]) -> None:
    """Run target(*args) for each args in its own thread, all at once; re-raise the first failure."""
    errors: list[str] = []
    barrier = threading.Barrier(len(arg_lists))

    def run(*args):
        try:
            barrier.wait(timeout=30)
            target(*args)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=args) for args in arg_lists]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]


def test_replicas_create_the_schema_together(database_url):
    """Every replica of every deployment creates missing tables as it starts; four processes do it at once."""
    start = time.time() + 0.5
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # the child: only os._exit, so nothing of the parent's (pools, pytest) is torn down here
            code = 1
            try:
                time.sleep(max(0.0, start - time.time()))
                Database(database_url).dispose()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0, 0, 0, 0]
    db = Database(database_url)
    assert set(METADATA.tables) <= set(sa.inspect(db.engine).get_table_names())
    db.dispose()


def test_chunk_writes_from_two_replicas_reach_every_index(database_url, tmp_path):
    """Writers on two replicas insert chunks into one store while a third replica's index follows along: no
    version increment is lost and the follower ends up with every chunk (none skipped by committing late)."""
    a, b = replicas(database_url, tmp_path / "blobs")
    sid = asyncio.run(a.create_store(CreateVectorStoreRequest(name="shared")))["id"]
    writers, rounds = 4, 10
    done = threading.Event()
    follower = VectorStoreIndex(sid, DIM, {"type": "flat"})

    def write(svc: VectorStoreService, w: int) -> None:
        for r in range(rounds):
            texts = [f"writer {w} round {r} part {k}" for k in range(2)]
            svc._insert_chunks(sid, f"doc-{w}", texts, embed_texts(texts), [{"document_id": f"doc-{w}"}] * 2)

    def follow() -> None:
        while not done.is_set():
            row = b._store_row(sid)
            follower.sync(b.db, row.add_version, row.del_version)
            time.sleep(0.001)

    watcher = threading.Thread(target=follow)
    watcher.start()
    try:
        in_threads(write, [(a if w % 2 else b, w) for w in range(writers)])
    finally:
        done.set()
        watcher.join()
    row = b._store_row(sid)
    assert row.add_version == writers * rounds
    follower.sync(b.db, row.add_version, row.del_version)
    with b.db.connect() as c:
        stored = c.execute(sa.select(sa.func.count()).where(chunks.c.vector_store_id == sid)).scalar()
    assert stored == follower.exact.ntotal == writers * rounds * 2
    for svc in (a, b):
        svc.db.dispose()


def test_attaching_one_file_on_two_replicas_at_once(database_url, tmp_path):
    a, b = replicas(database_url, tmp_path / "blobs")
    fid = a.files.create("bees.txt", "assistants", BEES.encode())["id"]

    async def go():
        sid = (await a.create_store(CreateVectorStoreRequest(name="race")))["id"]
        await asyncio.gather(*[svc.attach_file(sid, AttachFileRequest(file_id=fid)) for svc in (a, b, a, b)])
        await settle(a, b)
        counts = (await b.get_store(sid))["file_counts"]
        assert counts["total"] == counts["completed"] == 1
        spec = (await a.get_file(sid, fid))["chunking_strategy"]["static"]
        pieces = chunk_text(BEES, WordTokenizer(), spec["max_chunk_size_tokens"], spec["chunk_overlap_tokens"])
        content = [p["text"] for p in (await a.file_content(sid, fid))["data"]]
        assert content == pieces  # one ingestion's chunks, not one per attach
        for svc in (a, b):  # each replica's index catches up, whichever replica wrote the chunks
            hits = (await svc.search(sid, SearchRequest(query="waggle dance", max_num_results=50)))["data"]
            assert hits[0]["file_id"] == fid and len(hits) == len(pieces)

    asyncio.run(go())
    for svc in (a, b):
        svc.db.dispose()


def test_upserts_from_replicas_starting_together(database_url):
    """Safety replicas upsert their config shields at start; the Agents service saves a response as it starts
    and ends. Four replicas at once: no unique-key failure, one row each."""
    dbs = [Database(database_url) for _ in range(4)]

    def start_replica(db: Database, i: int) -> None:
        ShieldRegistry(db).upsert_from_config("guard", "llama-guard", f"model-{i}", {"i": i})
        ResponseStore(db).save({"id": "resp_1", "created_at": 1, "status": "completed", "model": "m",
                                "output": [], "by": i}, [], None)

    for _ in range(3):
        in_threads(start_replica, [(db, i) for i, db in enumerate(dbs)])
    with dbs[0].connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(shields)).scalar() == 1
    assert ShieldRegistry(dbs[1]).get("guard")["params"]["i"] in range(4)
    assert ResponseStore(dbs[2]).get("resp_1")["by"] in range(4)
    for db in dbs:
        db.dispose()
