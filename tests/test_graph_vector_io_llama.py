"""Vector IO across its two APIs, through the graph with the real clients: chunks inserted through Llama Stack's
vector-io show their metadata as OpenAI search attributes, files attached through OpenAI answer Llama Stack queries,
precomputed embeddings are used as given, and attaching a small file answers with its final status."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import llama_stack_client
import numpy as np
import openai
import pytest
from llama_stack_client import LlamaStackClient
from openai import OpenAI

from tests.conftest import MINILM, MINILM_ALIAS

pytestmark = pytest.mark.graph

CORPUS = Path(__file__).parent / "data" / "corpus"
PREFIXES = ["/v1", "/v1/openai/v1"]
CHUNKS = [  # Llama Stack's own sample chunks, with a source
    ("Python is a high-level programming language that emphasizes code readability and allows programmers to "
     "express concepts in fewer lines of code than would be possible in languages such as C++ or Java.",
     {"document_id": "doc1", "topic": "programming", "source": "wiki/python"}),
    ("Machine learning is a subset of artificial intelligence that enables systems to automatically learn and "
     "improve from experience without being explicitly programmed.",
     {"document_id": "doc2", "topic": "ai", "source": "wiki/ml"}),
    ("Data structures provide organized ways to store and access data efficiently and form the building blocks of "
     "complex software systems.", {"document_id": "doc3", "topic": "computer_science", "source": "wiki/ds"}),
    ("Neural networks are inspired by biological neural networks found in animal brains, using interconnected "
     "artificial neurons.", {"document_id": "doc4", "topic": "ai", "source": "wiki/nn"}),
]


@pytest.fixture(scope="module")
def lls(base_url) -> LlamaStackClient:
    return LlamaStackClient(base_url=base_url, max_retries=0)


@pytest.fixture(scope="module")
def clients(base_url) -> dict[str, OpenAI]:
    return {p: OpenAI(base_url=f"{base_url}{p}", api_key="none", max_retries=0) for p in PREFIXES}


@pytest.fixture
def vector_db(lls):
    """A fresh vector DB (MiniLM, 384 dimensions), which is also an OpenAI vector store."""
    db = f"vio-{uuid.uuid4().hex[:8]}"
    lls.vector_dbs.register(vector_db_id=db, embedding_model=MINILM, embedding_dimension=384)
    yield db
    lls.vector_dbs.unregister(db)


def upload(client: OpenAI, name: str, data: bytes | None = None) -> str:
    return client.files.create(file=(name, data or (CORPUS / name).read_bytes()), purpose="assistants").id


@pytest.mark.parametrize("prefix", PREFIXES)
def test_inserted_metadata_are_search_attributes(lls, clients, vector_db, prefix):
    client = clients[prefix]
    lls.vector_io.insert(vector_db_id=vector_db, chunks=[{"content": t, "metadata": m} for t, m in CHUNKS])
    top = client.vector_stores.search(vector_db, query="What is Python programming language?").data[0]
    assert top.attributes == CHUNKS[0][1] and top.file_id == "doc1"
    assert "Python" in top.content[0].text and 0 < top.score <= 1
    # filters see the same attributes: OpenAI's comparison filters, and Llama Stack 0.2's {key: value} shorthand
    for filters in ({"type": "eq", "key": "topic", "value": "ai"}, {"topic": "ai"}):
        hits = client.vector_stores.search(vector_db, query="artificial intelligence", filters=filters,
                                           max_num_results=10).data
        assert {h.attributes["document_id"] for h in hits} == {"doc2", "doc4"}
    found = lls.vector_io.query(vector_db_id=vector_db, query="How do systems learn without explicit programming?")
    assert found.chunks[0].metadata == CHUNKS[1][1]


def test_precomputed_embeddings_are_used_as_given(lls, clients, vector_db):
    # Llama Stack's own check: a constant vector, a query unrelated to it (its cosine with MiniLM's vector of the
    # query is slightly negative), and the chunk still comes back with its metadata
    lls.vector_io.insert(vector_db_id=vector_db, chunks=[{
        "content": "This is a test chunk with precomputed embedding.", "embedding": [0.1] * 384,
        "metadata": {"document_id": "doc1", "source": "precomputed"}}])
    r = lls.vector_io.query(vector_db_id=vector_db, query="precomputed embedding test")
    assert r.chunks[0].metadata == {"document_id": "doc1", "source": "precomputed"}

    # a chunk about knitting carries the embedding of a question about volcanoes: it ranks first for that question,
    # above a chunk that really is about volcanoes (re-embedding its text would put it last)
    question = "How do volcanoes erupt?"
    client = clients["/v1"]
    vec = client.embeddings.create(model=MINILM, input=question).data[0].embedding
    lls.vector_io.insert(vector_db_id=vector_db, chunks=[
        {"content": "Knitting a wool scarf takes patience and two needles.", "embedding": vec,
         "metadata": {"document_id": "knit"}},
        {"content": "Volcanoes erupt when magma rises through the crust and gas pressure builds.",
         "metadata": {"document_id": "volcano"}},
    ])
    r = lls.vector_io.query(vector_db_id=vector_db, query=question, params={"max_chunks": 3})
    assert [c.metadata["document_id"] for c in r.chunks[:2]] == ["knit", "volcano"]
    assert r.scores[0] == pytest.approx(1.0, abs=1e-4) and r.scores[1] < r.scores[0]
    page = client.vector_stores.search(vector_db, query=question, max_num_results=2)
    assert [d.file_id for d in page.data] == ["knit", "volcano"]


def test_bad_embeddings_and_params_are_400(lls, base_url, vector_db):
    good = {"content": "A fine chunk.", "metadata": {"document_id": "fine"}}
    cases = [([0.1] * 383, "chunks.1.embedding"), ([0.0] * 384, "chunks.1.embedding")]
    for embedding, param in cases:
        r = httpx.post(f"{base_url}/v1/vector-io/insert", json={"vector_db_id": vector_db, "chunks": [
            good, {"content": "bad", "metadata": {}, "embedding": embedding}]})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == param
    # NaN is no JSON, but Python's parser reads it: it must still be a 400, not a broken vector
    raw = json.dumps({"vector_db_id": vector_db, "chunks": [{"content": "nan", "metadata": {},
                                                             "embedding": [float("nan")] + [0.1] * 383}]})
    r = httpx.post(f"{base_url}/v1/vector-io/insert", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "chunks.0.embedding"
    with pytest.raises(llama_stack_client.BadRequestError):
        lls.vector_io.insert(vector_db_id=vector_db, chunks=[{"content": "x", "metadata": {}, "embedding": [1.0]}])
    # nothing of a refused insert was stored
    assert lls.vector_io.query(vector_db_id=vector_db, query="A fine chunk.").chunks == []
    r = httpx.post(f"{base_url}/v1/vector-io/query", json={"vector_db_id": vector_db, "query": "x",
                                                           "params": {"max_chunks": "ten"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "params.max_chunks"


def test_openai_files_answer_llama_stack_queries(lls, clients):
    """Files attached through every OpenAI route (create with file_ids, attach, file batch) are chunks Llama Stack
    queries find, with the file's attributes and document_id = the file id; each attach answered `completed`."""
    client = clients["/v1/openai/v1"]
    bees, volcano, chess = upload(client, "honeybees.md"), upload(client, "volcanoes.txt"), upload(client, "chess.html")
    store = client.vector_stores.create(name="both-apis", file_ids=[bees])
    assert store.file_counts.completed == 1 and store.status == "completed"  # the create waited for ingestion
    attached = client.vector_stores.files.create(store.id, file_id=volcano, attributes={"topic": "geology",
                                                                                         "year": 2021})
    assert attached.status == "completed" and attached.last_error is None
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[chess], attributes={"topic": "games"})
    assert batch.status == "completed" and batch.file_counts.completed == 1

    r = lls.vector_io.query(vector_db_id=store.id, query="Which volcanic hazard is the most deadly?")
    assert r.chunks[0].metadata["document_id"] == volcano
    assert {k: r.chunks[0].metadata[k] for k in ("topic", "year", "filename")} == {
        "topic": "geology", "year": 2021, "filename": "volcanoes.txt"}
    assert lls.vector_io.query(vector_db_id=store.id, query="When may the king castle?").chunks[0].metadata[
        "document_id"] == chess
    assert lls.vector_io.query(vector_db_id=store.id, query="waggle dance").chunks[0].metadata["document_id"] == bees
    rag = lls.tool_runtime.rag_tool.query(vector_db_ids=[store.id], content="deadliest volcanic hazard")
    assert rag.metadata["document_ids"][0] == volcano
    # OpenAI search keeps showing the file's own attributes; an update shows in Llama Stack queries at once
    hit = client.vector_stores.search(store.id, query="deadliest volcanic hazard", max_num_results=1).data[0]
    assert hit.file_id == volcano and hit.attributes == {"topic": "geology", "year": 2021}
    client.vector_stores.files.update(file_id=volcano, vector_store_id=store.id, attributes={"topic": "lava"})
    meta = lls.vector_io.query(vector_db_id=store.id, query="deadliest volcanic hazard").chunks[0].metadata
    assert meta["topic"] == "lava" and "year" not in meta and meta["document_id"] == volcano
    client.vector_stores.delete(store.id)
    for fid in (bees, volcano, chess):
        client.files.delete(fid)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_attach_answers_the_final_status(clients, prefix):
    client = clients[prefix]
    store = client.vector_stores.create(name="attach-waits")
    small = upload(client, "note.txt", b"Axolotls can regrow their limbs.")
    binary = upload(client, "blob.bin", b"\x00\x01\x02binary")
    done = client.vector_stores.files.create(store.id, file_id=small)
    assert done.status == "completed" and done.usage_bytes > 0
    failed = client.vector_stores.files.create(store.id, file_id=binary)
    assert failed.status == "failed" and failed.last_error.code == "unsupported_file"
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.completed, counts.failed, counts.in_progress) == (1, 1, 0)
    hits = client.vector_stores.search(store.id, query="animal that regrows limbs").data
    assert hits[0].file_id == small  # searchable as soon as the attach answered
    client.vector_stores.delete(store.id)


def test_search_scores_stay_in_range_for_precomputed_vectors(lls, clients, vector_db):
    """Precomputed vectors pointing away from the query give negative cosines: OpenAI scores stay in [0, 1]."""
    away = -np.asarray(clients["/v1"].embeddings.create(model=MINILM, input="tea ceremony").data[0].embedding)
    lls.vector_io.insert(vector_db_id=vector_db, chunks=[{"content": "opposite", "embedding": away.tolist(),
                                                          "metadata": {"document_id": "away"}}])
    hit = clients["/v1"].vector_stores.search(vector_db, query="tea ceremony").data[0]
    assert hit.file_id == "away" and hit.score == 0.0
    r = lls.vector_io.query(vector_db_id=vector_db, query="tea ceremony")
    assert r.scores[0] == pytest.approx(-1.0, abs=1e-4)  # Llama Stack gets the cosine itself
    with pytest.raises(openai.BadRequestError):
        clients["/v1"].vector_stores.search(vector_db, query="x", filters={"type": "like", "key": "a", "value": 1})


def test_model_alias_names_the_same_model(lls, base_url):
    """A config alias (all-MiniLM-L6-v2, as Llama Stack's distributions name the model) is the model: a vector DB
    registered with it records the model's id, and the model routes answer to it."""
    db = f"alias-{uuid.uuid4().hex[:8]}"
    lls.vector_dbs.register(vector_db_id=db, embedding_model=MINILM_ALIAS, embedding_dimension=384)
    assert lls.vector_dbs.retrieve(db).embedding_model == MINILM
    model = httpx.get(f"{base_url}/v1/models/{MINILM_ALIAS}").json()
    assert model["id"] == MINILM and model["metadata"]["aliases"] == [MINILM_ALIAS]
    assert MINILM_ALIAS not in [m["id"] for m in httpx.get(f"{base_url}/v1/models").json()["data"]]
    lls.vector_dbs.unregister(db)


def test_rag_documents_given_by_url_are_fetched(lls, vector_db):
    """A rag-tool document whose content is a URL (http(s):// or data:) is what the URL holds, as in Llama Stack;
    one that cannot be fetched is a 400 naming it, and nothing of that insert is stored."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from tests.tool_servers import LoopbackServer

    page = Starlette(routes=[Route("/guide.rst", lambda _: PlainTextResponse(
        "Grouped-query attention shares keys and values across heads."))])
    with LoopbackServer(page) as srv:
        docs = [{"document_id": "web-1", "content": f"http://127.0.0.1:{srv.port}/guide.rst", "metadata": {}},
                {"document_id": "data-1", "content": {"uri": "data:text/plain,Bees%20dance%20to%20point%20at%20food."},
                 "metadata": {}}]
        lls.tool_runtime.rag_tool.insert(documents=docs, vector_db_id=vector_db, chunk_size_in_tokens=64)
    hits = lls.vector_io.query(vector_db_id=vector_db, query="grouped-query attention heads").chunks
    assert hits[0].metadata["document_id"] == "web-1" and "keys and values" in hits[0].content
    bees = lls.vector_io.query(vector_db_id=vector_db, query="how do bees point at food").chunks
    assert bees[0].metadata["document_id"] == "data-1" and bees[0].content == "Bees dance to point at food."
    with pytest.raises(llama_stack_client.BadRequestError) as e:
        lls.tool_runtime.rag_tool.insert(vector_db_id=vector_db, chunk_size_in_tokens=64, documents=[
            {"document_id": "ok", "content": "plain text", "metadata": {}},
            {"document_id": "gone", "content": "http://127.0.0.1:9/missing.rst", "metadata": {}}])
    assert "documents.1.content" in str(e.value)
    assert all(c.metadata["document_id"] != "ok" for c in lls.vector_io.query(
        vector_db_id=vector_db, query="plain text", params={"max_chunks": 10}).chunks)
