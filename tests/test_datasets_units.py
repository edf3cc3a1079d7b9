"""DatasetIO without Ray: JSON rows <-> Arrow, sources (files, data: URIs, http on loopback, huggingface:// from a
local Hugging Face cache), the Parquet-parts store (pagination, typed appends, durability across service instances,
provider ids, the storage health check)."""

from __future__ import annotations

import base64
import http.server
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import deployments.datasets.tables  # noqa: F401
from deployments.datasets.huggingface import HFDatasetRef, load_hf, parse_hf_uri, split_files
from deployments.datasets.rows import rows_to_table, table_to_rows
from deployments.datasets.sources import load_uri
from deployments.datasets.store import DatasetService, provider_of
from serve.config import HuggingFaceSourceConfig
from serve.errors import ConflictError, InvalidRequestError, NotFoundError
from serve.protocol.datasets import AppendRowsRequest, RegisterDatasetRequest
from serve.storage import Database, LocalBlobStore
from tests.tool_servers import LoopbackServer, cache_hf_dataset, hf_hub_app


def test_rows_round_trip_any_json():
    rows = [{"a": 1, "b": "x", "c": {"k": [1, 2]}, "d": "s"},
            {"a": 2, "b": None, "c": [1, "two"], "d": 3},  # d mixes a string and a number
            {"a": None, "e": True}]
    table = rows_to_table(rows)
    assert table.schema.field("a").type == pa.int64()
    assert table_to_rows(table) == [{"a": 1, "b": "x", "c": {"k": [1, 2]}, "d": "s", "e": None},
                                    {"a": 2, "b": None, "c": [1, "two"], "d": 3, "e": None},
                                    {"a": None, "b": None, "c": None, "d": None, "e": True}]


def test_integers_past_int64_round_trip_exactly():
    rows = [{"n": 88082878388190842265205211136}, {"n": -(2**70)}, {"n": 1}]  # a fuzzed row once made this a 500
    assert table_to_rows(rows_to_table(rows)) == rows


def test_sources(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2, "y": [1]}\n')
    assert load_uri(str(tmp_path / "a.jsonl")).num_rows == 2
    (tmp_path / "a.json").write_text('[{"x": 1}, {"x": 2}]')
    assert load_uri(f"file://{tmp_path / 'a.json'}").column("x").to_pylist() == [1, 2]
    (tmp_path / "a.csv").write_text("x,y\n1,a\n2,b\n")
    assert load_uri(str(tmp_path / "a.csv")).column("y").to_pylist() == ["a", "b"]
    jsonl = base64.b64encode(b'{"q": "hi"}\n').decode()
    assert load_uri(f"data:application/jsonl;base64,{jsonl}").to_pylist() == [{"q": "hi"}]
    assert load_uri("data:text/csv,a%2Cb%0A1%2C2").to_pylist() == [{"a": 1, "b": 2}]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"p": ["z"]}), sink)
    b64 = base64.b64encode(sink.getvalue().to_pybytes()).decode()
    assert load_uri(f"data:application/vnd.apache.parquet;base64,{b64}").to_pylist() == [{"p": "z"}]
    for bad in ("/no/such.jsonl", str(tmp_path / "a.txt"), "hf://x/y", "data:text/csv;base64,%%",
                "ftp://127.0.0.1:1/x.csv"):
        with pytest.raises(InvalidRequestError):
            load_uri(bad)
    (tmp_path / "bad.jsonl").write_text('{"x": 1}\nnot json\n')
    with pytest.raises(InvalidRequestError):
        load_uri(str(tmp_path / "bad.jsonl"))
    with pytest.raises(InvalidRequestError, match="disabled"):
        load_uri(str(tmp_path / "a.csv"), allow_local_files=False)


def test_http_source_on_loopback(tmp_path):
    (tmp_path / "d.csv").write_text("k,v\na,1\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert load_uri(f"http://127.0.0.1:{server.server_port}/d.csv").to_pylist() == [{"k": "a", "v": 1}]
        with pytest.raises(InvalidRequestError):
            load_uri(f"http://127.0.0.1:{server.server_port}/missing.csv")
    finally:
        server.shutdown()


@pytest.fixture
def service(tmp_path) -> DatasetService:
    return DatasetService(Database(f"sqlite:///{tmp_path}/db.sqlite"), LocalBlobStore(tmp_path / "blobs"))


def test_store_pages_appends_and_persistence(service, tmp_path):
    rows = [{"i": i, "msg": [{"role": "user", "content": str(i)}]} for i in range(5)]
    service.register(RegisterDatasetRequest(purpose="post-training/messages", dataset_id="d",
                                            source={"type": "rows", "rows": rows}))
    for _ in range(3):
        service.append_rows("d", AppendRowsRequest(rows=[{"i": 100, "note": "appended"}]))
    page = service.iterrows("d", 4, 3)
    assert [r["i"] for r in page["data"]] == [4, 100, 100] and page["has_more"] and page["next_start_index"] == 7
    last = service.iterrows("d", 7, 10)
    assert len(last["data"]) == 1 and not last["has_more"] and last["next_start_index"] is None
    assert len(service.iterrows("d", None, -1)["data"]) == 8
    with pytest.raises(InvalidRequestError):
        service.append_rows("d", AppendRowsRequest(rows=[{"i": "text"}]))
    with pytest.raises(InvalidRequestError):
        service.iterrows("d", 9, None)
    with pytest.raises(ConflictError):
        service.register(RegisterDatasetRequest(purpose="post-training/messages", dataset_id="d",
                                                source={"type": "rows", "rows": [{"i": 1}]}))
    again = DatasetService(Database(f"sqlite:///{tmp_path}/db.sqlite"), LocalBlobStore(tmp_path / "blobs"))  # a restart
    assert again.iterrows("d", 0, None)["data"] == service.iterrows("d", 0, None)["data"]
    assert not list((tmp_path / "blobs" / "datasets").rglob(".tmp-*"))  # no half-written parts
    again.unregister("d")
    with pytest.raises(NotFoundError):
        service.iterrows("d", 0, 1)
    assert list((tmp_path / "blobs" / "datasets").iterdir()) == []  # the bytes are gone


# ---- huggingface:// sources (no network: a local Hugging Face cache, the hub on a closed port) ------------------

def _parquet(**columns) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


CARD = b"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
- config_name: hard
  data_files: hard/*.csv
---
# A dataset card
"""


@pytest.fixture
def hf_cache(tmp_path) -> Path:
    cache = tmp_path / "hf"
    cache_hf_dataset(cache, "acme/qa", {
        "README.md": CARD,
        "data/train-00000-of-00002.parquet": _parquet(q=["a", "b"], a=["1", "2"]),
        "data/train-00001-of-00002.parquet": _parquet(q=["c"], a=["3"]),
        "data/test-00000-of-00001.parquet": _parquet(q=["t"], a=["9"]),
        "hard/all.csv": b"q,a\nx,y\n"})
    cache_hf_dataset(cache, "acme/plain", {"simple_train.jsonl": b'{"q": "p"}\n', "simple_test.jsonl": b'{"q": "s"}\n'})
    cache_hf_dataset(cache, "acme/one-file", {"rows.csv": b"q\nonly\n"})
    return cache


def _hf(cache: Path, **kw) -> HuggingFaceSourceConfig:
    return HuggingFaceSourceConfig(cache_dir=str(cache), **kw)


def test_huggingface_uri_parsing():
    assert parse_hf_uri("huggingface://datasets/llamastack/simpleqa?split=train") == HFDatasetRef(
        "llamastack/simpleqa", "train")
    assert parse_hf_uri("huggingface://datasets/acme/qa?split=test&name=hard&revision=v1") == HFDatasetRef(
        "acme/qa", "test", "hard", "v1")
    assert parse_hf_uri("huggingface://datasets/acme/qa").split == "train"
    for bad in ("huggingface://llamastack/simpleqa", "huggingface://datasets/", "huggingface://datasets/a/b/c",
                "huggingface://datasets/acme/qa?split=train&streaming=true"):
        with pytest.raises(InvalidRequestError):
            parse_hf_uri(bad)


def test_huggingface_split_files_from_the_card_or_file_names():
    files = ["README.md", "data/train-0.parquet", "data/test-0.parquet", "hard/all.csv", "notes.txt"]
    card = CARD.decode()
    assert split_files(files, HFDatasetRef("r", "train"), card) == ["data/train-0.parquet"]
    assert split_files(files, HFDatasetRef("r", "train", "hard"), card) == ["hard/all.csv"]
    with pytest.raises(InvalidRequestError, match="no split 'validation'"):
        split_files(files, HFDatasetRef("r", "validation"), card)
    with pytest.raises(InvalidRequestError, match="no config 'nope'"):
        split_files(files, HFDatasetRef("r", "train", "nope"), card)
    # no card: the hub's naming conventions
    named = ["train/a.parquet", "x_test.csv", "qa-validation-0.jsonl", "trainer.csv", "default/train/0000.parquet"]
    assert split_files(named, HFDatasetRef("r", "train"), None) == ["default/train/0000.parquet", "train/a.parquet"]
    assert split_files(named, HFDatasetRef("r", "test"), None) == ["x_test.csv"]
    assert split_files(named, HFDatasetRef("r", "train", "default"), None) == ["default/train/0000.parquet"]
    assert split_files(["rows.csv"], HFDatasetRef("r", "train"), None) == ["rows.csv"]  # no split named: train
    assert split_files(["rows.csv"], HFDatasetRef("r", "test"), None) == []


def test_huggingface_from_the_cache_when_the_hub_is_unreachable(hf_cache):
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens
    rows = load_hf("huggingface://datasets/acme/qa?split=train", _hf(hf_cache, endpoint=closed)).to_pylist()
    assert rows == [{"q": "a", "a": "1"}, {"q": "b", "a": "2"}, {"q": "c", "a": "3"}]  # both parts, in order
    assert load_hf("huggingface://datasets/acme/qa?split=test", _hf(hf_cache, offline=True)).to_pylist() == [
        {"q": "t", "a": "9"}]
    assert load_hf("huggingface://datasets/acme/qa?name=hard", _hf(hf_cache, offline=True)).to_pylist() == [
        {"q": "x", "a": "y"}]
    assert load_uri("huggingface://datasets/acme/plain?split=test", huggingface=_hf(hf_cache, offline=True)
                    ).to_pylist() == [{"q": "s"}]
    assert load_hf("huggingface://datasets/acme/one-file", _hf(hf_cache, offline=True)).num_rows == 1
    with pytest.raises(InvalidRequestError, match=r"not in the local Hugging Face cache.*could not be reached"):
        load_hf("huggingface://datasets/llamastack/simpleqa?split=train", _hf(hf_cache, endpoint=closed))
    with pytest.raises(InvalidRequestError, match=r"not in the local Hugging Face cache.*reads only the cache"):
        load_hf("huggingface://datasets/llamastack/simpleqa?split=train", _hf(hf_cache, offline=True))
    with pytest.raises(InvalidRequestError, match="no data files for split 'validation'"):
        load_hf("huggingface://datasets/acme/plain?split=validation", _hf(hf_cache, offline=True))
    for disabled in (lambda: load_hf("huggingface://datasets/acme/qa", _hf(hf_cache, enabled=False)),
                     lambda: load_uri("huggingface://datasets/acme/qa")):  # a caller that says nothing of them
        with pytest.raises(InvalidRequestError, match="disabled"):
            disabled()


def test_huggingface_datasets_are_the_huggingface_providers(service, hf_cache):
    service.huggingface = _hf(hf_cache, offline=True)
    ds = service.register(RegisterDatasetRequest(purpose="eval/question-answer", source={
        "type": "uri", "uri": "huggingface://datasets/acme/qa?split=train"}))
    assert ds["provider_id"] == "huggingface" and service.iterrows(ds["identifier"], 0, 2)["has_more"]
    local = service.register(RegisterDatasetRequest(purpose="eval/question-answer", source={
        "type": "rows", "rows": [{"q": 1}]}))
    assert local["provider_id"] == "localfs"
    assert provider_of({"type": "uri", "uri": "data:text/csv,a"}) == "localfs"
    assert [d["provider_id"] for d in service.list()] == ["huggingface", "localfs"]


def test_storage_check(service, tmp_path):
    service.check_storage()
    (tmp_path / "blobs").rename(tmp_path / "elsewhere")  # the volume is gone
    with pytest.raises(RuntimeError, match="missing"):
        service.check_storage()


def test_huggingface_from_the_hub_then_from_its_cache(tmp_path):
    """Downloads only the split's files from a (fake) hub; with the hub gone, the same split reads from the cache,
    a split never downloaded is a clear 400."""
    repo = {"README.md": CARD, "data/train-0.parquet": _parquet(q=["a"]), "data/test-0.parquet": _parquet(q=["t"]),
            "hard/all.csv": b"q\nx\n"}
    cfg = _hf(tmp_path / "hf")
    with LoopbackServer(hf_hub_app({"acme/qa": repo})) as hub:
        online = cfg.model_copy(update={"endpoint": f"http://127.0.0.1:{hub.port}"})
        assert load_hf("huggingface://datasets/acme/qa?split=test", online).to_pylist() == [{"q": "t"}]
        with pytest.raises(InvalidRequestError, match="hub refused"):
            load_hf("huggingface://datasets/acme/nope", online)
    downloaded = {p.name for p in (tmp_path / "hf").rglob("*") if p.is_file() and p.parent.name != "blobs"}
    assert {"README.md", "test-0.parquet"} <= downloaded and not {"train-0.parquet", "all.csv"} & downloaded
    closed = cfg.model_copy(update={"endpoint": online.endpoint})  # nothing listens there now
    assert load_hf("huggingface://datasets/acme/qa?split=test", closed).to_pylist() == [{"q": "t"}]
    with pytest.raises(InvalidRequestError, match="no data files for split 'train'.*could not be reached"):
        load_hf("huggingface://datasets/acme/qa?split=train", closed)
