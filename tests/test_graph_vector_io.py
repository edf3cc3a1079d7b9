"""Files, embeddings and vector stores through the graph: real MiniLM, real FAISS, real SQL, real clients."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from llama_stack_client import LlamaStackClient
from openai import OpenAI

from tests.conftest import MINILM

pytestmark = pytest.mark.graph

CORPUS = Path(__file__).parent / "data" / "corpus"
ATTRS = {
    "honeybees.md": {"topic": "nature", "year": 2019},
    "volcanoes.txt": {"topic": "nature", "year": 2021},
    "chess.html": {"topic": "games", "year": 2018},
    "sourdough.json": {"topic": "food", "year": 2022},
    "lighthouses.pdf": {"topic": "history", "year": 2020},
}
QUESTIONS = [
    ("How do honeybees tell each other where the flowers are?", "honeybees.md"),
    ("Which volcanic hazard is the most deadly?", "volcanoes.txt"),
    ("When is the king allowed to castle?", "chess.html"),
    ("What gives sourdough bread its tangy flavour?", "sourdough.json"),
    ("What does a Fresnel lens do in a lighthouse?", "lighthouses.pdf"),
]


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0)


def wait_ingested(client: OpenAI, store_id: str, timeout: float = 120) -> list:
    deadline = time.time() + timeout
    while time.time() < deadline:
        files = client.vector_stores.files.list(store_id, limit=100).data
        if files and all(f.status != "in_progress" for f in files):
            return files
        time.sleep(0.3)
    raise TimeoutError("ingestion did not finish")


@pytest.fixture(scope="module")
def corpus_store(client):
    ids = {}
    for name in ATTRS:
        with open(CORPUS / name, "rb") as fh:
            ids[name] = client.files.create(file=(name, fh.read()), purpose="assistants").id
    store = client.vector_stores.create(name="corpus", file_ids=[], metadata={"suite": "graph"})
    for name, fid in ids.items():
        client.vector_stores.files.create(store.id, file_id=fid, attributes=ATTRS[name])
    files = wait_ingested(client, store.id)
    assert {f.status for f in files} == {"completed"}, [f.last_error for f in files]
    return store.id, ids


def test_embeddings(client):
    r = client.embeddings.create(model=MINILM, input=["The cat sat on the mat.", "A feline rested on a rug.",
                                                      "Stock markets fell sharply today."])
    vecs = np.array([d.embedding for d in r.data])
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2  # paraphrases are closer than unrelated text
    assert r.usage.prompt_tokens > 10
    b = httpx.post(f"{client.base_url}embeddings", json={"model": MINILM, "input": "The cat sat on the mat.",
                                                          "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(b["data"][0]["embedding"]), dtype=np.float32)
    assert np.allclose(decoded, vecs[0], atol=1e-5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MINILM, input="x", dimensions=128)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="HuggingFaceTB/SmolLM2-135M-Instruct", input="x")


def test_files_api(client):
    f = client.files.create(file=("notes.txt", b"hello files"), purpose="user_data")
    assert f.bytes == 11 and f.filename == "notes.txt"
    assert client.files.retrieve(f.id).purpose == "user_data"
    assert client.files.content(f.id).read() == b"hello files"
    listed = client.files.list(purpose="user_data")
    assert f.id in [x.id for x in listed.data]
    assert client.files.delete(f.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)


def test_files_bad_input(client, base_url):
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("a.txt", b"x"), purpose="nonsense")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-doesnotexist")


def _stored_file_blobs(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "files").iterdir()} if (data_dir / "files").is_dir() else set()


def test_a_multi_mib_upload_round_trips_byte_identical(client, base_url, data_dir):
    """6 MiB of random bytes up (the ingress streams them into the blob store) and down (streamed out of it, with
    Content-Length): the same bytes, the row's size, the file's bytes under the data dir."""
    data = np.random.default_rng(19).bytes(6 << 20)
    f = client.files.create(file=("noise.bin", data), purpose="user_data")
    assert f.bytes == len(data) and f.id in _stored_file_blobs(data_dir)
    assert client.files.content(f.id).read() == data
    with httpx.stream("GET", f"{base_url}/v1/files/{f.id}/content", timeout=60) as r:
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(data)
        assert r.headers["content-type"] == "application/octet-stream"
        assert b"".join(r.iter_bytes()) == data
    client.files.delete(f.id)
    assert f.id not in _stored_file_blobs(data_dir)


def _multipart_chunked(size: int, boundary: str = "stackserve-test-boundary"):
    """A multipart upload of `size` bytes sent with Transfer-Encoding: chunked (no Content-Length to refuse early)."""
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
           f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    for start in range(0, size, 1 << 20):
        yield b"x" * min(1 << 20, size - start)
    yield f"\r\n--{boundary}--\r\n".encode()


def test_too_large_uploads_get_413_and_leave_no_bytes(base_url, data_dir):
    """One byte over vector_io.max_file_bytes: 413 in OpenAI's envelope, whether the body's size is announced or
    not (chunked); nothing is left in the store. (A body announced far over the limit is refused unread by the
    guard: tests/test_app_units.py.)"""
    from tests.conftest import MAIN_MAX_FILE_BYTES

    before = _stored_file_blobs(data_dir)
    r = httpx.post(f"{base_url}/v1/files", files={"file": ("big.txt", b"x" * (MAIN_MAX_FILE_BYTES + 1))},
                   data={"purpose": "assistants"}, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["error"] == {"message": f"the file exceeds the limit of {MAIN_MAX_FILE_BYTES} bytes",
                                 "type": "invalid_request_error", "param": "file", "code": "file_too_large"}
    boundary = "stackserve-test-boundary"
    r = httpx.post(f"{base_url}/v1/files", content=_multipart_chunked(MAIN_MAX_FILE_BYTES + (2 << 20), boundary),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    assert _stored_file_blobs(data_dir) == before


@pytest.mark.parametrize("question,expected", QUESTIONS)
def test_questions_find_their_chunk(client, corpus_store, question, expected):
    store_id, ids = corpus_store
    r = client.vector_stores.search(store_id, query=question, max_num_results=3)
    assert ids[expected] in [d.file_id for d in r.data], [(d.filename, d.score) for d in r.data]
    top = r.data[0]
    assert top.content[0].text and 0 < top.score <= 1
    assert top.attributes == ATTRS[top.filename]


def test_search_filters(client, corpus_store):
    store_id, ids = corpus_store
    q = "an interesting fact"
    games = client.vector_stores.search(store_id, query=q, filters={"type": "eq", "key": "topic", "value": "games"})
    assert {d.file_id for d in games.data} == {ids["chess.html"]}
    recent = client.vector_stores.search(store_id, query=q, max_num_results=20, filters={
        "type": "and", "filters": [{"type": "eq", "key": "topic", "value": "nature"},
                                   {"type": "gt", "key": "year", "value": 2020}]})
    assert {d.file_id for d in recent.data} == {ids["volcanoes.txt"]}
    either = client.vector_stores.search(store_id, query=q, max_num_results=20, filters={
        "type": "or", "filters": [{"type": "eq", "key": "topic", "value": "food"},
                                  {"type": "lte", "key": "year", "value": 2018}]})
    assert {d.file_id for d in either.data} == {ids["sourdough.json"], ids["chess.html"]}
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(store_id, query=q, filters={"type": "like", "key": "topic", "value": "x"})


def test_score_threshold_and_modes(client, corpus_store, base_url):
    store_id, ids = corpus_store
    all_hits = client.vector_stores.search(store_id, query="waggle dance", max_num_results=10)
    middle = (all_hits.data[0].score + all_hits.data[-1].score) / 2
    strict = client.vector_stores.search(store_id, query="waggle dance", max_num_results=10,
                                         ranking_options={"score_threshold": middle})
    assert 0 < len(strict.data) < len(all_hits.data)
    for mode in ("keyword", "hybrid"):
        r = httpx.post(f"{base_url}/v1/vector_stores/{store_id}/search",
                       json={"query": "waggle dance", "search_mode": mode, "max_num_results": 3}).json()
        assert r["data"][0]["file_id"] == ids["honeybees.md"], mode
        assert all(0 < d["score"] <= 1 for d in r["data"])
    # a word that only keyword search can match exactly ranks the chess page first
    r = httpx.post(f"{base_url}/v1/vector_stores/{store_id}/search",
                   json={"query": "passant", "search_mode": "keyword"}).json()
    assert r["data"][0]["file_id"] == ids["chess.html"] and len(r["data"]) == 1


def test_store_listing_and_pagination(client, corpus_store):
    store_id, ids = corpus_store
    store = client.vector_stores.retrieve(store_id)
    assert store.file_counts.completed == 5 and store.usage_bytes > 0 and store.metadata == {"suite": "graph"}
    page = client.vector_stores.files.list(store_id, limit=2, order="asc")
    assert len(page.data) == 2 and page.has_more
    rest = client.vector_stores.files.list(store_id, limit=10, order="asc", after=page.data[-1].id)
    assert len(rest.data) == 3 and not rest.has_more
    assert {f.id for f in page.data + rest.data} == set(ids.values())
    content = client.vector_stores.files.content(file_id=ids["chess.html"], vector_store_id=store_id)
    text = " ".join(c.text for c in content)
    assert "Castling" in text and "console.log" not in text
    updated = client.vector_stores.files.update(file_id=ids["chess.html"], vector_store_id=store_id,
                                                attributes={"topic": "board games", "year": 2018})
    assert updated.attributes["topic"] == "board games"
    client.vector_stores.files.update(file_id=ids["chess.html"], vector_store_id=store_id,
                                      attributes=ATTRS["chess.html"])
    renamed = client.vector_stores.update(store_id, name="corpus-renamed")
    assert renamed.name == "corpus-renamed"
    assert store_id in [s.id for s in client.vector_stores.list(limit=100).data]


def test_static_chunking_and_batches(client):
    with open(CORPUS / "volcanoes.txt", "rb") as fh:
        fid = client.files.create(file=("volcanoes.txt", fh.read()), purpose="assistants").id
    store = client.vector_stores.create(name="small-chunks", chunking_strategy={
        "type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}})
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[fid])
    assert batch.object == "vector_store.files_batch"
    wait_ingested(client, store.id)
    assert client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id).file_counts.completed == 1
    chunks = client.vector_stores.files.content(file_id=fid, vector_store_id=store.id)
    assert len(list(chunks)) >= 2  # ~200 tokens of text in windows of 100
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(chunking_strategy={"type": "static", "static": {
            "max_chunk_size_tokens": 100, "chunk_overlap_tokens": 80}})
    client.vector_stores.delete(store.id)


def test_failed_file_reports_last_error(client):
    fid = client.files.create(file=("blob.bin", b"\x00\x01\x02binary"), purpose="assistants").id
    store = client.vector_stores.create(name="bad-files")
    client.vector_stores.files.create(store.id, file_id=fid)
    files = wait_ingested(client, store.id)
    assert files[0].status == "failed" and files[0].last_error.code == "unsupported_file"
    client.vector_stores.delete(store.id)


def test_deletes_remove_vectors(client):
    with open(CORPUS / "honeybees.md", "rb") as fh:
        data = fh.read()
    a = client.files.create(file=("bees-a.md", data), purpose="assistants").id
    b = client.files.create(file=("bees-b.md", data), purpose="assistants").id
    store = client.vector_stores.create(name="deletes", file_ids=[a, b])
    wait_ingested(client, store.id)
    hits = {d.file_id for d in client.vector_stores.search(store.id, query="waggle dance", max_num_results=10).data}
    assert hits == {a, b}
    client.vector_stores.files.delete(file_id=a, vector_store_id=store.id)
    hits = {d.file_id for d in client.vector_stores.search(store.id, query="waggle dance", max_num_results=10).data}
    assert hits == {b}
    client.files.delete(b)  # deleting the file takes it out of the store too
    assert client.vector_stores.search(store.id, query="waggle dance").data == []
    assert client.vector_stores.files.list(store.id).data == []
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_unknown_ids_404(client):
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.search("vs_nope", query="x")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create("vs_nope", file_id="file-nope")
    store = client.vector_stores.create(name="empty")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(store.id, file_id="file-nope")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id="file-nope", vector_store_id=store.id)
    client.vector_stores.delete(store.id)


def test_llama_stack_vector_io(base_url):
    lls = LlamaStackClient(base_url=base_url, max_retries=0)
    db = lls.vector_dbs.register(vector_db_id="kb-test", embedding_model=MINILM, embedding_dimension=384)
    assert db.identifier == "kb-test" and db.embedding_dimension == 384
    assert "kb-test" in [d.identifier for d in lls.vector_dbs.list()]
    lls.vector_io.insert(vector_db_id="kb-test", chunks=[
        {"content": "The Eiffel Tower is in Paris.", "metadata": {"document_id": "d1"}},
        {"content": "Mount Kilimanjaro is the highest mountain in Africa.", "metadata": {"document_id": "d2"}},
    ])
    r = lls.vector_io.query(vector_db_id="kb-test", query="tallest African peak", params={"max_chunks": 1})
    assert r.chunks[0].metadata["document_id"] == "d2" and len(r.scores) == 1
    lls.tool_runtime.rag_tool.insert(vector_db_id="kb-test", chunk_size_in_tokens=64, documents=[
        {"document_id": "bees", "content": (CORPUS / "honeybees.md").read_text(), "metadata": {}}])
    out = lls.tool_runtime.rag_tool.query(vector_db_ids=["kb-test"], content="What is the waggle dance for?")
    assert out.metadata["document_ids"][0] == "bees"
    assert any("waggle" in item.text for item in out.content)
    lls.vector_dbs.unregister("kb-test")
    assert "kb-test" not in [d.identifier for d in lls.vector_dbs.list()]


def test_two_replicas_share_state(client, corpus_store):
    from ray import serve

    handle = serve.get_deployment_handle("VectorIO", app_name="stackserve")
    replicas = {handle.replica_id.remote().result() for _ in range(30)}
    assert len(replicas) == 2
    store_id, ids = corpus_store
    fid = client.files.create(file=("fresh.txt", b"Axolotls can regrow their limbs and parts of their brain."),
                              purpose="assistants").id
    client.vector_stores.files.create(store_id, file_id=fid)
    wait_ingested(client, store_id)
    for _ in range(8):  # requests spread over both replicas; each must see the new chunk
        hits = client.vector_stores.search(store_id, query="animal that regenerates limbs", max_num_results=1).data
        assert hits[0].file_id == fid
    client.vector_stores.files.delete(file_id=fid, vector_store_id=store_id)
    client.files.delete(fid)


def test_restart_loses_nothing(client, corpus_store, main_config, base_url):
    """Tear the whole application down and deploy it again: stores, files and search results survive."""
    from ray import serve

    from tests.conftest import main_graph

    store_id, ids = corpus_store
    before = client.vector_stores.search(store_id, query=QUESTIONS[0][0], max_num_results=3)
    serve.delete("stackserve")
    serve.run(main_graph(main_config), name="stackserve", route_prefix="/")
    after = client.vector_stores.search(store_id, query=QUESTIONS[0][0], max_num_results=3)
    assert [(d.file_id, round(d.score, 4)) for d in after.data] == [(d.file_id, round(d.score, 4)) for d in before.data]
    assert client.vector_stores.retrieve(store_id).file_counts.completed == 5
    assert client.files.content(ids["chess.html"]).read() == (CORPUS / "chess.html").read_bytes()


def _attach_ignoring_errors(client: OpenAI, store_id: str, file_id: str) -> None:
    try:
        client.vector_stores.files.create(store_id, file_id=file_id)
    except (openai.APIStatusError, openai.APIConnectionError):
        pass  # its replica was killed under it


def test_ingestion_resumes_after_every_vector_io_replica_dies(client):
    """Kill both VectorIO replicas while a large file is being ingested: Serve starts new ones, one of them takes
    the orphaned ingestion over once its lease (3 s here) runs out, and the file ends with exactly the chunks a
    clean ingestion gives."""
    import random

    import ray

    rng = random.Random(7)
    words = "river stone lantern orbit meadow copper signal harbor glacier thistle ember violin".split()
    text = "\n\n".join(" ".join(rng.choice(words) for _ in range(60)) + "." for _ in range(400))[:190_000]
    fid = client.files.create(file=("big.txt", text.encode()), purpose="assistants").id
    vs = client.vector_stores.create(name="resume-after-crash")
    # the attach call waits for the ingestion (vector_io.attach_wait_s) on a replica about to be killed: send it
    # from a thread, and kill once the file is in progress
    attach = threading.Thread(target=_attach_ignoring_errors, args=(client, vs.id, fid), daemon=True)
    attach.start()
    deadline = time.time() + 30
    while True:
        try:
            status = client.vector_stores.files.retrieve(fid, vector_store_id=vs.id).status
            break
        except openai.NotFoundError:
            assert time.time() < deadline, "the attach never reached the store"
            time.sleep(0.05)
    assert status == "in_progress"
    killed = 0
    for a in ray.util.list_named_actors(all_namespaces=True):
        if "#VectorIO#" in a["name"] and "stackserve" in a["name"]:
            ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]), no_restart=True)
            killed += 1
    assert killed == 2
    deadline, status = time.time() + 240, "in_progress"
    while status == "in_progress":
        assert time.time() < deadline, "the ingestion was never resumed"
        time.sleep(0.5)
        try:
            status = client.vector_stores.files.retrieve(fid, vector_store_id=vs.id).status
        except (openai.InternalServerError, openai.APIConnectionError):
            continue  # no VectorIO replica yet
    assert status == "completed"
    attach.join(timeout=30)
    resumed = client.vector_stores.files.content(fid, vector_store_id=vs.id).data
    clean = client.vector_stores.create(name="clean", file_ids=[fid])
    wait_ingested(client, clean.id, timeout=240)
    assert len(resumed) == len(client.vector_stores.files.content(fid, vector_store_id=clean.id).data) > 10
    hits = client.vector_stores.search(vs.id, query="copper lantern harbor", max_num_results=3).data
    assert hits and all(h.file_id == fid for h in hits)


def test_a_growing_store_gets_its_approximate_index_in_the_background(client, base_url, data_dir):
    """An hnsw store past train_min_vectors: searches answer at once (exact) while the HNSW index is built, then
    from it; the build's snapshot lands in the blob store for the other replica (unit tests: it loads it)."""
    from deployments.vector_io.index_snapshots import IndexSnapshots
    from serve.storage import LocalBlobStore

    store = client.vector_stores.create(name="ann", extra_body={"index": {"type": "hnsw", "train_min_vectors": 100}})
    rng = np.random.default_rng(7)
    words = "amber basalt cobalt delta ember fjord garnet heron iris jasper kelp lichen".split()
    texts = [f"{i}: " + " ".join(rng.choice(words, 8)) for i in range(120)]
    r = httpx.post(f"{base_url}/v1/vector-io/insert", timeout=120, json={
        "vector_db_id": store.id, "chunks": [{"content": t, "metadata": {"document_id": f"d{i}"}}
                                             for i, t in enumerate(texts)]})
    assert r.status_code == 200, r.text

    def top(query: str) -> str:
        return client.vector_stores.search(store.id, query=query, max_num_results=1).data[0].content[0].text

    assert top(texts[7]) == texts[7]  # at once: exact search while the build runs
    snapshots = IndexSnapshots(LocalBlobStore(data_dir))
    deadline = time.time() + 120
    while (found := snapshots.load(store.id, "hnsw")) is None and time.time() < deadline:
        time.sleep(0.5)
    assert found is not None and found[0].ntotal == 120
    assert all(top(texts[i]) == texts[i] for i in (7, 42, 99, 7, 42, 99))  # both replicas, from HNSW
    client.vector_stores.delete(store.id)
    assert snapshots.load(store.id, "hnsw") is None  # deleting the store drops its snapshot (on that replica)
