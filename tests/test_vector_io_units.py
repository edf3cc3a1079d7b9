"""Vector IO pieces without Ray: extraction, chunking, filters, BM25, rank fusion, pagination, the FAISS index."""

from pathlib import Path

import numpy as np
import pytest

from deployments.vector_io.bm25 import BM25Index
from deployments.vector_io.chunking import chunk_text, resolve_chunking
from deployments.vector_io.extract import UnsupportedFileError, extract_text
from deployments.vector_io.filters import matches, normalize_filter, validate_filter
from deployments.vector_io.index import reciprocal_rank_fusion
from serve.errors import InvalidRequestError
from serve.pagination import paginate

CORPUS = Path(__file__).parent / "data" / "corpus"


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from deployments.vector_io.embedding_model import resolve_embedding_source

    return AutoTokenizer.from_pretrained(resolve_embedding_source("all-MiniLM-L6-v2"))


@pytest.mark.parametrize("name,needle,absent", [
    ("chess.html", "Castling is a special move", "console.log"),
    ("lighthouses.pdf", "Fresnel lens", None),
    ("sourdough.json", "lactic acid", None),
    ("honeybees.md", "waggle dance", None),
])
def test_extract(name, needle, absent):
    text = extract_text(name, (CORPUS / name).read_bytes())
    assert needle in text
    if absent:
        assert absent not in text


def test_extract_rejects_binary():
    with pytest.raises(UnsupportedFileError):
        extract_text("x.bin", b"\x00\x01\x02\x03")


def test_chunks_are_verbatim_windows_with_overlap(minilm_tokenizer):
    text = (CORPUS / "volcanoes.txt").read_text().strip()
    pieces = chunk_text(text, minilm_tokenizer, 40, 10)
    assert len(pieces) > 3
    assert all(p in text for p in pieces)
    assert all(len(minilm_tokenizer(p, add_special_tokens=False)["input_ids"]) <= 40 for p in pieces)
    assert pieces[0].split()[-1] in pieces[1]  # consecutive windows overlap
    assert chunk_text("short text", minilm_tokenizer, 40, 10) == ["short text"]


def test_auto_chunking_caps_to_the_model():
    assert resolve_chunking(None, 256)["static"] == {"max_chunk_size_tokens": 256, "chunk_overlap_tokens": 128}
    assert resolve_chunking({"type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 50}},
                            256)["static"]["max_chunk_size_tokens"] == 300


def test_filters():
    attrs = {"topic": "nature", "year": 2021}
    assert matches({"type": "eq", "key": "topic", "value": "nature"}, attrs)
    assert matches({"type": "and", "filters": [{"type": "gte", "key": "year", "value": 2021},
                                               {"type": "in", "key": "topic", "value": ["nature", "x"]}]}, attrs)
    assert not matches({"type": "gt", "key": "topic", "value": 3}, attrs)  # mixed types: no match, no error
    assert matches({"type": "ne", "key": "missing", "value": 1}, attrs)
    for bad in [{"type": "eq", "key": "a"}, {"type": "and", "filters": []}, {"type": "regex", "key": "a", "value": 1},
                {"type": "in", "key": "a", "value": 3}, "nope"]:
        with pytest.raises(InvalidRequestError):
            validate_filter(bad)


def test_llama_stack_shorthand_filters():
    """Llama Stack 0.2 sends {key: value} for equality; OpenAI filters and anything else pass through unchanged."""
    assert normalize_filter({"topic": "ai"}) == {"type": "eq", "key": "topic", "value": "ai"}
    both = normalize_filter({"topic": "ai", "year": 2020})
    assert both["type"] == "and" and len(both["filters"]) == 2
    assert matches(both, {"topic": "ai", "year": 2020}) and not matches(both, {"topic": "ai", "year": 2021})
    openai_filter = {"type": "eq", "key": "topic", "value": "ai"}
    assert normalize_filter(openai_filter) is openai_filter
    for left in ({}, {"topic": ["a", "b"]}, "nope"):
        assert normalize_filter(left) == left
        with pytest.raises(InvalidRequestError):
            validate_filter(left)


def test_bm25_and_fusion():
    idx = BM25Index()
    idx.add([1, 2, 3], ["the quick brown fox", "the lazy dog sleeps", "a fox and a dog"])
    assert [c for c, _ in idx.search("fox", 5)] in ([1, 3], [3, 1])
    assert idx.search("dog", 5, allowed={2})[0][0] == 2
    fused = reciprocal_rank_fusion([(1, 0.9), (2, 0.5)], [(2, 3.0), (3, 1.0)])
    assert fused[0][0] == 2 and fused[0][1] <= 1


def test_pagination():
    items = [{"id": f"x{i}"} for i in range(5)]
    page = paginate(items, limit=2, order="asc")
    assert [i["id"] for i in page["data"]] == ["x0", "x1"] and page["has_more"]
    page = paginate(items, limit=2, order="asc", after="x1")
    assert [i["id"] for i in page["data"]] == ["x2", "x3"]
    page = paginate(items, limit=10, order="desc", before="x1")
    assert [i["id"] for i in page["data"]] == ["x4", "x3", "x2"] and not page["has_more"]
    with pytest.raises(InvalidRequestError):
        paginate(items, after="nope")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_kinds_agree_on_the_nearest(tmp_path, kind):
    import sqlalchemy as sa

    from deployments.vector_io.index import VectorStoreIndex
    from deployments.vector_io.tables import chunks
    from serve.storage import Database

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with db.begin() as c:
        c.execute(sa.insert(chunks), [{"vector_store_id": "s", "file_id": f"f{i % 3}", "chunk_index": i,
                                       "text": f"t{i}", "embedding": v.tobytes(), "metadata": {}}
                                      for i, v in enumerate(vecs)])
    from deployments.vector_io.ann_builder import AnnBuilder

    idx = VectorStoreIndex("s", 16, {"type": kind, "train_min_vectors": 100, "nlist": 4, "nprobe": 4}, AnnBuilder(None))
    idx.sync(db, 1, 0)
    assert idx.wait_for_build(60)  # approximate indexes are built in the background
    assert idx.kind == kind
    hits = idx.vector_search(vecs[7:8], 3, None)
    assert hits[0][0] == 8 and hits[0][1] == pytest.approx(1.0, abs=1e-4)  # seq = row + 1
    only_f1 = idx.vector_search(vecs[7:8], 5, {"f1"})
    assert all((seq - 1) % 3 == 1 for seq, _ in only_f1)
    # chunks allowed one by one (inserted chunks passing a filter) join the allowed files' chunks
    mixed = idx.vector_search(vecs[7:8], 300, {"f1"}, {8, 9})
    assert {8, 9} <= {seq for seq, _ in mixed} and all((seq - 1) % 3 == 1 or seq in (8, 9) for seq, _ in mixed)
    assert [seq for seq, _ in idx.vector_search(vecs[7:8], 5, set(), {8})] == [8]
    assert idx.keyword_search("t7", 5, set(), set()) == []


# ---- Llama Stack chunks in both APIs ---------------------------------------------------------------------------


def test_query_params():
    from deployments.vector_io.llama_stack import query_params

    assert query_params(None) == (3, 0.0, "vector")
    assert query_params({"max_chunks": 7.0, "score_threshold": 0.25, "mode": "hybrid"}) == (7, 0.25, "hybrid")
    for bad, param in [({"max_chunks": "ten"}, "params.max_chunks"), ({"max_chunks": 0}, "params.max_chunks"),
                       ({"max_chunks": True}, "params.max_chunks"), ({"score_threshold": "high"},
                                                                      "params.score_threshold"),
                       ({"score_threshold": float("nan")}, "params.score_threshold"), ({"mode": "fuzzy"},
                                                                                       "params.mode")]:
        with pytest.raises(InvalidRequestError) as e:
            query_params(bad)
        assert e.value.param == param
    with pytest.raises(InvalidRequestError) as e:
        query_params({"max_chunks": -1}, "query_config")
    assert e.value.param == "query_config.max_chunks"


def test_chunk_ids_and_documents():
    from deployments.vector_io.llama_stack import chunk_id_of, document_id_of
    from serve.protocol.vector_io import LlamaChunk

    plain = LlamaChunk(content="x", metadata={"document_id": 12})
    assert chunk_id_of(plain) is None and document_id_of(plain) == "12"
    later = LlamaChunk(content="x", metadata={}, chunk_metadata={"chunk_id": "c-1", "document_id": "doc-9"})
    assert chunk_id_of(later) == "c-1" and document_id_of(later) == "doc-9"
    assert chunk_id_of(LlamaChunk(content="x", stored_chunk_id="s-1", chunk_id="c-2")) == "s-1"
    assert document_id_of(LlamaChunk(content="x")) == ""


def test_given_embeddings_are_checked_and_kept():
    from deployments.vector_io.llama_stack import given_embedding

    v = given_embedding([3.0, 4.0, 0.0], 3, "chunks.0.embedding")
    assert v.dtype == np.float32 and np.allclose(v, [0.6, 0.8, 0.0])  # same direction, unit length
    with pytest.raises(InvalidRequestError) as e:
        given_embedding([0.1] * 5, 3, "chunks.2.embedding")
    assert e.value.param == "chunks.2.embedding" and "5 dimensions" in e.value.message
    assert np.allclose(given_embedding([1e300, 1e300, 0.0], 3, "e"), [0.5 ** 0.5, 0.5 ** 0.5, 0.0])
    for bad in ([0.0, 0.0, 0.0], [1.0, float("nan"), 0.0], [float("inf"), 1.0, 0.0]):
        with pytest.raises(InvalidRequestError):
            given_embedding(bad, 3, "chunks.0.embedding")


def test_chunk_views_in_both_apis():
    """An inserted chunk shows its own metadata (as OpenAI attributes: scalars, JSON text for the rest); a file's
    chunk shows the file's attributes, and to Llama Stack also document_id = the file id."""
    from types import SimpleNamespace

    from deployments.vector_io.llama_stack import llama_chunk, openai_attributes, search_attributes

    inserted = SimpleNamespace(file_id="doc1", text="hello", chunk_id="c-1", chunk_metadata={"chunk_id": "c-1"},
                               metadata={"document_id": "doc1", "source": "precomputed", "n": 2, "ok": True,
                                         "tags": ["a", "b"], "none": None})
    assert search_attributes(inserted, None) == {"document_id": "doc1", "source": "precomputed", "n": 2, "ok": True,
                                                 "tags": '["a", "b"]'}
    assert llama_chunk(inserted, None) == {"content": "hello", "metadata": inserted.metadata,
                                           "stored_chunk_id": "c-1", "chunk_metadata": {"chunk_id": "c-1"}}
    from_file = SimpleNamespace(file_id="file-1", text="bees", chunk_id=None, chunk_metadata=None,
                                metadata={"file_id": "file-1", "filename": "bees.md"})
    assert search_attributes(from_file, {"topic": "nature"}) == {"topic": "nature"}
    assert llama_chunk(from_file, {"topic": "nature", "document_id": "spoofed"}) == {
        "content": "bees", "metadata": {"file_id": "file-1", "filename": "bees.md", "topic": "nature",
                                        "document_id": "file-1"}}
    assert openai_attributes({"x": float("inf")}) == {"x": "inf"}


def test_rag_chunk_template():
    from deployments.vector_io.llama_stack import CHUNK_TEMPLATE, chunk_template, knowledge_search_result

    hits = [("doc-1", "Bees dance.", 0.9, {"document_id": "doc-1", "author": "ann"})]
    default = knowledge_search_result(hits)["content"]
    assert default[1]["text"] == "Result 1\nContent: Bees dance.\nMetadata: {'document_id': 'doc-1', 'author': 'ann'}\n"
    assert chunk_template(None) == CHUNK_TEMPLATE
    own = chunk_template({"chunk_template": "#{index}: {chunk.content}\n"})
    assert knowledge_search_result(hits, own)["content"][1]["text"] == "#1: Bees dance.\n"
    for bad in ("{chunk.content} only", "{index} {chunk.__class__} {chunk.content}", "{index} {chunk.content", 7):
        with pytest.raises(InvalidRequestError) as e:
            chunk_template({"chunk_template": bad})
        assert e.value.param == "query_config.chunk_template"


def test_rag_documents_by_url():
    import base64

    from deployments.vector_io.llama_stack import document_url, fetch_document

    assert document_url("https://example.com/a.rst") == "https://example.com/a.rst"
    assert document_url({"uri": "data:text/plain,hi"}) == "data:text/plain,hi"
    assert document_url("see https://example.com for more") is None  # text that mentions a URL is text
    assert document_url("file:///etc/passwd") is None
    data = "data:text/html;base64," + base64.b64encode(b"<html><p>Bees dance.</p></html>").decode()
    assert fetch_document(data, "documents.0.content", 1000) == (".html", b"<html><p>Bees dance.</p></html>")
    with pytest.raises(InvalidRequestError, match="larger than 10 bytes"):
        fetch_document(data, "documents.0.content", 10)
    with pytest.raises(InvalidRequestError) as e:
        fetch_document("http://127.0.0.1:9/nothing.txt", "documents.1.content", 1000, timeout_s=5)
    assert e.value.param == "documents.1.content" and e.value.code == "document_unreachable"
