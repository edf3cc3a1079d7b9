"""The SQL-backed stores on both storage backends, sqlite and PostgreSQL, driven directly (no Ray).

Every test takes `database_url` (conftest.py), so it runs once per backend on an empty database. A store added
later (datasets, batches, ...) joins with one fixture built on `db`, its tests taking that fixture like these do.
Concurrency (two replicas on one database) is in test_storage_concurrency.py.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

import deployments.agents.llama_tables  # noqa: F401  (register their tables on METADATA)
import deployments.agents.tables  # noqa: F401
import deployments.batches.tables  # noqa: F401
import deployments.datasets.tables  # noqa: F401
import deployments.vector_io.tables  # noqa: F401
from deployments.agents.store import ConversationStore, ResponseStore
from deployments.safety.registry import ShieldRegistry
from deployments.vector_io.files import FileService
from deployments.vector_io.store import VectorStoreService
from serve.errors import ConflictError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from serve.protocol.vector_io import AttachFileRequest, CreateVectorStoreRequest, FileBatchRequest, SearchRequest
from serve.protocol.vector_io import UpdateVectorStoreRequest as UpdateStore
from serve.storage import Database, LocalBlobStore
from serve.storage.sql import METADATA
from tests.fake_embedding import MODEL, embed, model_info

BEES = ("Honeybees tell their sisters where the flowers are with the waggle dance. The angle of the waggle run "
        "gives the direction and its length gives the distance to the nectar.")
VOLCANO = ("Pyroclastic flows are the deadliest volcanic hazard: avalanches of hot gas and ash racing downhill "
           "faster than a car. Lava flows are slow by comparison.")


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def files(db, tmp_path) -> FileService:
    return FileService(db, LocalBlobStore(tmp_path / "blobs"), max_bytes=64 * 1024)


def store_service(db: Database, files: FileService) -> VectorStoreService:
    return VectorStoreService(db, files, embed, {MODEL: model_info()}, MODEL, {"type": "flat"})


@pytest.fixture
def stores(db, files) -> VectorStoreService:
    return store_service(db, files)


async def settle(*services: VectorStoreService) -> None:
    """Wait for the background ingestion tasks (they must finish inside the test's event loop)."""
    while any(s._tasks for s in services):
        await asyncio.gather(*[t for s in services for t in list(s._tasks)])


def ids(page: dict) -> list[str]:
    return [item["id"] for item in page["data"]]


# ---- files ---------------------------------------------------------------------------------------------------------

def test_files(files):
    a = files.create("a.txt", "assistants", b"alpha")
    b = files.create("b.jsonl", "batch", b'{"x": 1}\n')
    c = files.create("dir/evil\x00name.txt", "assistants", b"gamma")
    assert files.get(a["id"]) == a and a["bytes"] == 5 and a["filename"] == "a.txt"
    assert c["filename"] == "dir_evilname.txt"  # no path separators, no NUL
    assert files.content(b["id"]) == ("b.jsonl", b'{"x": 1}\n')
    assert ids(files.list(None, None, 20, "asc")) == [a["id"], b["id"], c["id"]]
    page = files.list(None, None, 2, "desc")
    assert ids(page) == [c["id"], b["id"]] and page["has_more"]
    assert ids(files.list(None, page["last_id"], 2, "desc")) == [a["id"]]
    assert ids(files.list("batch", None, 20, "asc")) == [b["id"]]
    assert files.create("x" * 2000 + ".txt", "assistants", b"z")["filename"] == ("x" * 2000 + ".txt")[-255:]
    with pytest.raises(InvalidRequestError):
        files.create("a.txt", "nope", b"x")
    with pytest.raises(InvalidRequestError):
        files.create("a.txt", "assistants", b"")
    with pytest.raises(PayloadTooLargeError):
        files.create("a.txt", "assistants", b"x" * (64 * 1024 + 1))
    files.delete(a["id"])
    for call in (files.get, files.content, files.delete):
        with pytest.raises(NotFoundError):
            call(a["id"])


# ---- vector stores -------------------------------------------------------------------------------------------------

def test_vector_store_lifecycle(stores, files):
    bees = files.create("bees.txt", "assistants", BEES.encode())["id"]
    volcano = files.create("volcano.md", "assistants", VOLCANO.encode())["id"]

    async def go():
        vs = await stores.create_store(CreateVectorStoreRequest(name="nature", file_ids=[bees],
                                                                metadata={"suite": "storage"}))
        await stores.attach_file(vs["id"], AttachFileRequest(file_id=volcano, attributes={"topic": "geo",
                                                                                          "year": 2021}))
        await settle(stores)
        got = await stores.get_store(vs["id"])
        assert got["file_counts"] == {"in_progress": 0, "completed": 2, "failed": 0, "cancelled": 0, "total": 2}
        assert got["status"] == "completed" and got["metadata"] == {"suite": "storage"}
        assert got["usage_bytes"] >= len(BEES) + len(VOLCANO) > 0  # overlapping chunks count twice
        listed = await stores.list_files(vs["id"], None, None, None, 20, "asc")
        assert ids(listed) == [bees, volcano] and {f["status"] for f in listed["data"]} == {"completed"}

        content = await stores.file_content(vs["id"], bees)
        texts = [c["text"] for c in content["data"]]
        assert len(texts) > 2 and texts[0].startswith("Honeybees tell") and texts[-1].endswith("nectar.")

        async def top(query, mode="vector", filters=None):
            page = await stores.search(vs["id"], SearchRequest(query=query, search_mode=mode, filters=filters))
            return [hit["file_id"] for hit in page["data"]]

        for mode in ("vector", "keyword", "hybrid"):
            assert (await top("waggle dance of honeybees", mode))[0] == bees
            assert (await top("deadliest volcanic hazard", mode))[0] == volcano
        assert set(await top("waggle dance", filters={"type": "eq", "key": "topic", "value": "geo"})) == {volcano}
        assert set(await top("waggle dance", filters={"type": "lt", "key": "year", "value": 2000})) == set()

        await stores.update_file(vs["id"], bees, {"topic": "bio"})
        assert set(await top("dance", filters={"type": "in", "key": "topic", "value": ["bio"]})) == {bees}
        await stores.update_store(vs["id"], UpdateStore(name="renamed", metadata={"v": "2"}))
        assert (await stores.get_store(vs["id"]))["name"] == "renamed"

        await stores.delete_file(vs["id"], bees)
        assert (await stores.get_store(vs["id"]))["file_counts"]["total"] == 1
        assert bees not in await top("waggle dance of honeybees")

        other = [await stores.create_store(CreateVectorStoreRequest(name=f"s{i}")) for i in range(3)]
        page = await stores.list_stores(None, None, 2, "desc")
        assert ids(page) == [other[2]["id"], other[1]["id"]] and page["has_more"]
        assert ids(await stores.list_stores(page["last_id"], None, 5, "desc")) == [other[0]["id"], vs["id"]]

        await stores.delete_store(vs["id"])
        with pytest.raises(NotFoundError):
            await stores.get_store(vs["id"])
        with pytest.raises(NotFoundError):
            await stores.list_files(vs["id"], None, None, None, 20, "asc")

    asyncio.run(go())


def test_ingestion_of_a_dead_replica_is_resumed_once(db, files):
    """Replica A attaches a file and dies before ingesting it (its task never runs); once A's lease has run out,
    B and C both look for orphans: exactly one takes it over and the file ends with one set of chunks."""
    a, b, c = (VectorStoreService(db, files, embed, {MODEL: model_info()}, MODEL, {"type": "flat"},
                                  runner=name, lease_s=0.3) for name in "abc")
    bees = files.create("bees.txt", "assistants", BEES.encode())["id"]

    async def go():
        vs = await a.create_store(CreateVectorStoreRequest(name="resume"))
        a._start_ingest = lambda *args: None  # A dies right after the attach is stored
        await a.attach_file(vs["id"], AttachFileRequest(file_id=bees))
        assert await b.resume_orphans() == 0  # A's lease still runs
        await asyncio.sleep(0.4)
        taken = await asyncio.gather(b.resume_orphans(), c.resume_orphans())
        assert sorted(taken) == [0, 1]
        await settle(b, c)
        got = await b.get_file(vs["id"], bees)
        assert got["status"] == "completed", got
        content = await b.file_content(vs["id"], bees)
        fresh = await b.create_store(CreateVectorStoreRequest(name="fresh", file_ids=[bees]))
        await settle(b)
        assert len(content["data"]) == len((await b.file_content(fresh["id"], bees))["data"]) > 1  # no doubles
        assert await c.resume_orphans() == 0

    asyncio.run(go())


def test_file_batches_and_failures(stores, files):
    good = [files.create(f"{i}.txt", "assistants", f"note {i} {BEES}".encode())["id"] for i in range(2)]
    binary = files.create("blob.bin", "assistants", b"\x00\x01\x02\x03" * 16)["id"]
    nul_text = files.create("nul.txt", "assistants", b"plain text with a \x00 NUL byte in it")["id"]

    async def go():
        vs = await stores.create_store(CreateVectorStoreRequest(name="batch"))
        batch = await stores.create_batch(vs["id"], FileBatchRequest(file_ids=[*good, binary, nul_text]))
        await settle(stores)
        batch = await stores.get_batch(vs["id"], batch["id"])
        assert batch["status"] == "completed"
        assert batch["file_counts"] == {"in_progress": 0, "completed": 3, "failed": 1, "cancelled": 0, "total": 4}
        failed = await stores.get_file(vs["id"], binary)
        assert failed["status"] == "failed" and failed["last_error"]["code"] == "unsupported_file"
        content = await stores.file_content(vs["id"], nul_text)
        assert content["data"][0]["text"] == "plain text with a  NUL byte in it"
        assert len((await stores.list_files(vs["id"], "completed", None, None, 20, "asc", batch["id"]))["data"]) == 3
        assert (await stores.cancel_batch(vs["id"], batch["id"]))["status"] == "cancelled"
        with pytest.raises(NotFoundError):
            await stores.get_batch(vs["id"], "vsfb_missing")

    asyncio.run(go())


def test_attach_waits_for_ingestion(db, files):
    """Attaching (one file, file_ids at creation, a batch) answers with the final state when ingestion ends within
    attach_wait_s, failures with last_error; past it, or with 0, in_progress, and the ingestion goes on."""
    bees = files.create("bees.txt", "assistants", BEES.encode())["id"]
    volcano = files.create("volcano.md", "assistants", VOLCANO.encode())["id"]
    binary = files.create("blob.bin", "assistants", b"\x00\x01\x02\x03" * 16)["id"]

    async def slow_embed(model_id: str, texts: list[str]):
        await asyncio.sleep(0.5)
        return await embed(model_id, texts)

    def service(embedder, wait_s: float) -> VectorStoreService:
        return VectorStoreService(db, files, embedder, {MODEL: model_info()}, MODEL, {"type": "flat"},
                                  attach_wait_s=wait_s)

    waiting, slow, at_once = service(embed, 30), service(slow_embed, 0.2), service(slow_embed, 0)

    async def go():
        vs = await waiting.create_store(CreateVectorStoreRequest(name="waits", file_ids=[bees, volcano]))
        assert vs["status"] == "completed" and vs["file_counts"]["completed"] == 2
        assert (await waiting.attach_file(vs["id"], AttachFileRequest(file_id=bees)))["status"] == "completed"
        failed = await waiting.attach_file(vs["id"], AttachFileRequest(file_id=binary))
        assert failed["status"] == "failed" and failed["last_error"]["code"] == "unsupported_file"
        other = await waiting.create_store(CreateVectorStoreRequest(name="batch"))
        batch = await waiting.create_batch(other["id"], FileBatchRequest(file_ids=[bees, volcano]))
        assert batch["status"] == "completed" and batch["file_counts"]["completed"] == 2

        for svc in (slow, at_once):
            started = asyncio.get_running_loop().time()
            got = await svc.attach_file(vs["id"], AttachFileRequest(file_id=volcano))
            waited = asyncio.get_running_loop().time() - started
            assert got["status"] == "in_progress" and waited >= svc.attach_wait_s
            await settle(svc)
            assert (await waiting.get_file(vs["id"], volcano))["status"] == "completed"
        created = await at_once.create_store(CreateVectorStoreRequest(name="no-wait", file_ids=[bees]))
        assert created["file_counts"]["in_progress"] == 1
        await settle(at_once)

    asyncio.run(go())


def test_llama_stack_chunks(stores):
    async def go():
        vs = await stores.create_store(CreateVectorStoreRequest(name="docs-db"), store_id="docs-db")
        with pytest.raises(ConflictError):
            await stores.create_store(CreateVectorStoreRequest(name="docs-db"), store_id="docs-db")
        texts = ["bees dance to share the way", "lava is molten rock", "bees make honey"]
        await stores.insert_chunks(vs["id"], texts, [{"document_id": "d1"}, {"document_id": "d2"},
                                                     {"document_id": "d1"}], [None, None, None])
        found = await stores.ranked_chunks(vs["id"], ["bees honey"], 2, "vector", None)
        assert [row.text for row, _, _ in found] == ["bees make honey", "bees dance to share the way"]
        with pytest.raises(InvalidRequestError):
            await stores.insert_chunks(vs["id"], ["x"], [{}], [[1.0, 2.0]])  # wrong dimension

    asyncio.run(go())


def test_inserted_chunks_and_files_share_a_store(stores, files):
    """One store, both kinds of chunks: OpenAI search shows an inserted chunk's metadata as its attributes and
    filters on it (OpenAI filters and Llama Stack's {key: value}), a file's chunks keep the file's attributes."""
    bees = files.create("bees.txt", "assistants", BEES.encode())["id"]

    async def go():
        vs = await stores.create_store(CreateVectorStoreRequest(name="mixed"))
        await stores.attach_file(vs["id"], AttachFileRequest(file_id=bees, attributes={"topic": "bees"}))
        await settle(stores)
        await stores.insert_chunks(vs["id"], ["lava is molten rock from volcanoes", "volcanoes erupt ash clouds"],
                                   [{"document_id": "geo", "topic": "lava"}, {"document_id": "geo2", "topic": "ash"}],
                                   [None, None], chunk_ids=["c-lava", None], documents=["geo", "geo2"])

        async def hits(query: str, filters=None) -> list[dict]:
            page = await stores.search(vs["id"], SearchRequest(query=query, max_num_results=50, filters=filters))
            return page["data"]

        lava = (await hits("molten lava"))[0]
        assert lava["file_id"] == "geo" and lava["attributes"] == {"document_id": "geo", "topic": "lava"}
        bee = (await hits("waggle dance of honeybees"))[0]
        assert bee["file_id"] == bees and bee["attributes"] == {"topic": "bees"} and bee["filename"] == "bees.txt"
        for f in ({"type": "eq", "key": "topic", "value": "ash"}, {"topic": "ash"}):
            assert [h["file_id"] for h in await hits("molten lava", f)] == ["geo2"]
        assert {h["file_id"] for h in await hits("dance", {"type": "eq", "key": "topic", "value": "bees"})} == {bees}
        either = {"type": "in", "key": "topic", "value": ["bees", "lava"]}
        assert {h["file_id"] for h in await hits("anything", either)} == {bees, "geo"}
        for mode in ("keyword", "hybrid"):
            page = await stores.search(vs["id"], SearchRequest(query="lava rock", search_mode=mode,
                                                               filters={"topic": "lava"}))
            assert [h["file_id"] for h in page["data"]] == ["geo"]
        found = await stores.ranked_chunks(vs["id"], ["molten lava"], 10, "vector", None)
        by_file = {row.file_id: (row, attrs) for row, _, attrs in found}
        assert by_file["geo"][1] is None and by_file["geo"][0].chunk_id == "c-lava"
        assert by_file[bees][1] == {"topic": "bees"}

    asyncio.run(go())


def test_values_only_one_backend_would_store(stores, files):
    """sqlite keeps over-long strings, NULs and NaN; PostgreSQL refuses them. Both must answer the same: 400."""
    fid = files.create("a.txt", "assistants", BEES.encode())["id"]

    async def go():
        for bad in ("x" * 1025, "a\x00b"):
            with pytest.raises(InvalidRequestError):
                await stores.create_store(CreateVectorStoreRequest(name=bad))
        with pytest.raises(ValidationError):  # expires_after is validated as OpenAI's {anchor, days} before the store
            CreateVectorStoreRequest(name="n", expires_after={"anchor": "last_active_at", "days": float("nan")})
        assert (await stores.list_stores(None, None, 20, "asc"))["data"] == []
        vs = await stores.create_store(CreateVectorStoreRequest(name="naïve 🐝 東京",
                                                                metadata={"k": "\x00 ok in JSON"}))
        got = await stores.get_store(vs["id"])
        assert got["name"] == "naïve 🐝 東京" and got["metadata"] == {"k": "\x00 ok in JSON"}
        with pytest.raises(InvalidRequestError):
            await stores.attach_file(vs["id"], AttachFileRequest(file_id=fid, attributes={"s": float("inf")}))
        assert (await stores.list_files(vs["id"], None, None, None, 20, "asc"))["data"] == []
        with pytest.raises(InvalidRequestError):
            await stores.insert_chunks(vs["id"], ["nul \x00 inside"], [{}], [None])
        with pytest.raises(NotFoundError):  # an id longer than any stored one is simply not there
            await stores.get_store("vs_" + "x" * 300)
        with pytest.raises(InvalidRequestError):
            await stores.get_store("vs_\x00")

    asyncio.run(go())


# ---- responses and conversations -----------------------------------------------------------------------------------

def response(rid: str, status: str, model: str = "m1", created: int = 100, text: str = "") -> dict:
    out = [{"type": "message", "id": f"msg_{rid}", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text}]}] if text else []
    return {"id": rid, "object": "response", "created_at": created, "status": status, "model": model,
            "output": out}


def user(text: str, item_id: str) -> dict:
    return {"type": "message", "id": item_id, "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": text}]}


def test_responses(db):
    store = ResponseStore(db)
    store.save(response("resp_1", "in_progress"), [user("hi", "u1")], None)
    store.save(response("resp_1", "completed", text="hello", created=999), [user("ignored", "x")], None)
    assert store.get("resp_1")["status"] == "completed" and store.status("resp_1") == "completed"
    assert store.get("resp_1")["created_at"] == 999  # the body is the latest saved; the row keeps its input
    store.save(response("resp_2", "completed", model="m2", text="again"), [user("more", "u2")], "resp_1")
    assert [it["id"] for it in store.history("resp_2")] == ["u1", "msg_resp_1", "u2", "msg_resp_2"]
    assert store.chain("resp_2") == ("resp_1", store.history("resp_2"))  # named by its first response
    assert store.chain("resp_1")[0] == "resp_1"
    assert ids(store.list(None, 20, "desc", None)) == ["resp_2", "resp_1"]
    assert ids(store.list(None, 20, "desc", "m2")) == ["resp_2"]
    assert ids(store.list("resp_2", 20, "desc", None)) == ["resp_1"]
    assert ids(store.input_items("resp_1", None, None, 20, "asc")) == ["u1"]
    with pytest.raises(InvalidRequestError):
        store.cancel("resp_1")
    store.save(response("resp_3", "in_progress"), [], None)
    assert store.cancel("resp_3")["status"] == "cancelled" and store.status("resp_3") == "cancelled"
    store.delete("resp_1")
    with pytest.raises(NotFoundError):
        store.get("resp_1")
    with pytest.raises(NotFoundError):
        store.history("resp_2")  # its chain is broken
    assert store.status("resp_1") is None


def test_runs_whose_replica_died_are_failed_not_left_running(db):
    import time

    store = ResponseStore(db)
    dead, alive, done = (response(i, "in_progress") for i in ("resp_dead", "resp_alive", "resp_done"))
    store.save(dead, [], None, ("replica-a", 0.2))
    store.save(alive, [], None, ("replica-b", 0.2))
    store.save(done, [], None, ("replica-a", 0.2))
    store.save({**done, "status": "completed"}, [], None)  # finished: no lease any more
    time.sleep(0.3)
    assert store.renew("resp_alive", "replica-b", 60) and not store.renew("resp_alive", "replica-a", 60)
    assert store.fail_orphans() == ["resp_dead"] and store.fail_orphans() == []
    got = store.get("resp_dead")
    assert got["status"] == "failed" and got["error"]["code"] == "server_error"
    assert store.status("resp_alive") == "in_progress" and store.status("resp_done") == "completed"
    assert not store.renew("resp_dead", "replica-a", 60)  # a late renewal cannot revive it


def test_conversations(db):
    convs = ConversationStore(db)
    a = convs.create([{"role": "user", "content": "first", "id": "same"}], {"topic": "a"})
    b = convs.create(None, None)
    convs.append(b["id"], [user("in b", "same")])  # ids are unique per conversation, not across them
    convs.append(a["id"], [user("second", "a2"), user("third", "a3")])
    with pytest.raises(ConflictError):
        convs.append(a["id"], [user("fourth", "a4"), user("dup", "a2")])
    assert [it["id"] for it in convs.items(a["id"])] == ["same", "a2", "a3"]  # all or nothing
    with pytest.raises(ConflictError):
        convs.create([{"role": "user", "content": "x", "id": "twice"}] * 2, {"n": "1"})
    assert len(db_rows(db, "conversations", "id")) == 2  # no conversation left behind without its items
    page = convs.list_items(a["id"], None, 2, "asc")
    assert ids(page) == ["same", "a2"] and page["has_more"]
    assert convs.get_item(a["id"], "a3")["content"][0]["text"] == "third"
    convs.delete_item(a["id"], "same")
    assert convs.get_item(b["id"], "same")["content"][0]["text"] == "in b"
    with pytest.raises(NotFoundError):
        convs.get_item(a["id"], "same")
    assert convs.update(a["id"], {"topic": "changed"})["metadata"] == {"topic": "changed"}
    convs.delete(a["id"])
    for call in (convs.get, convs.items):
        with pytest.raises(NotFoundError):
            call(a["id"])
    assert [it["id"] for it in convs.items(b["id"])] == ["same"]


def db_rows(db: Database, table: str, column: str) -> list:
    with db.connect() as c:
        return [r[0] for r in c.execute(sa.select(METADATA.tables[table].c[column]))]


# ---- shields registry ----------------------------------------------------------------------------------------------

def test_shields(db):
    reg = ShieldRegistry(db)
    reg.upsert_from_config("guard", "llama-guard", "m1", {"excluded_categories": []})
    reg.register("scanner", "code-scanner", None, {})
    reg.upsert_from_config("guard", "llama-guard", "m2", {"excluded_categories": ["S1"]})  # a restart, new config
    assert [s["identifier"] for s in reg.list()] == ["guard", "scanner"]
    assert reg.get("guard")["provider_resource_id"] == "m2" and reg.get("guard")["params"]["excluded_categories"]
    with pytest.raises(ConflictError):
        reg.register("scanner", "code-scanner", None, {})
    with pytest.raises(InvalidRequestError):
        reg.register("other", "no-such-provider", None, {})
    reg.delete("scanner")
    with pytest.raises(NotFoundError):
        reg.get("scanner")


# ---- the stores added later: datasets, batches, Llama Stack agents, tool groups; owners on every backend ---------

def test_datasets_batches_agents_toolgroups_and_owners(db, tmp_path):
    from deployments.agents.llama_agents import AgentStore
    from deployments.agents.toolgroups import ToolGroupRegistry
    from deployments.batches.store import BatchStore
    from deployments.datasets.store import DatasetService
    from serve.auth import acting_as
    from serve.protocol.datasets import RegisterDatasetRequest

    datasets, batches, agents = DatasetService(db, LocalBlobStore(tmp_path / "ds")), BatchStore(db), AgentStore(db)
    rows = {"type": "rows", "rows": [{"q": "1+1", "a": "2"}]}
    with acting_as("alice"):
        datasets.register(RegisterDatasetRequest(purpose="eval/question-answer", source=rows, dataset_id="qa"))
        batches.insert(id="batch_1", status="validating", endpoint="/v1/chat/completions", input_file_id="file-1",
                       completion_window="24h", created_at=0, expires_at=1)
        agent = agents.create_agent({"model": "m", "instructions": "x"})["agent_id"]
        assert datasets.iterrows("qa", None, None)["data"] == [{"q": "1+1", "a": "2"}]
        assert [b["id"] for b in batches.list(None, 10)["data"]] == ["batch_1"]
    with acting_as("bob"):
        for call in (lambda: datasets.get("qa"), lambda: batches.get("batch_1"), lambda: agents.get_agent(agent),
                     lambda: agents.create_session(agent, "s")):
            with pytest.raises(NotFoundError):
                call()
        assert datasets.list() == [] and batches.list(None, 10)["data"] == [] and agents.list_agents(None, None)[
            "data"] == []
        with pytest.raises(ConflictError):  # ids chosen by clients stay unique across principals
            datasets.register(RegisterDatasetRequest(purpose="eval/question-answer", source=rows, dataset_id="qa"))
        with pytest.raises(InvalidRequestError):  # refused alike on both backends, not stored or a 500
            agents.create_session(agents.create_agent({"model": "m"})["agent_id"], "n" * 1025)
    tools = ToolGroupRegistry(db)
    tools.register("mcp::calc", "model-context-protocol", "http://127.0.0.1:9/mcp", None)
    tools.register("mcp::calc", "model-context-protocol", "http://127.0.0.1:9/mcp", None)  # the same again
    with pytest.raises(ConflictError):
        tools.register("mcp::calc", "model-context-protocol", "http://127.0.0.1:8/mcp", None)
    assert "mcp::calc" in [g["identifier"] for g in tools.list()]
    tools.unregister("builtin::rag")  # a builtin's unregistration is a row too
    assert [g["identifier"] for g in ToolGroupRegistry(db).list()] == ["mcp::calc"]
    tools.register("builtin::rag", "rag-runtime", None, None)
    assert [g["identifier"] for g in ToolGroupRegistry(db).list()] == ["builtin::rag", "mcp::calc"]


def test_libpq_style_urls_use_psycopg(postgres_databases):
    url = postgres_databases.create()
    try:
        db = Database(url.replace("postgresql+psycopg://", "postgresql://"))  # as in the README
        ShieldRegistry(db).register("s", "code-scanner", None, {})
        assert db.dialect == "postgresql" and db.engine.driver == "psycopg"
        db.dispose()
    finally:
        postgres_databases.drop(url)
