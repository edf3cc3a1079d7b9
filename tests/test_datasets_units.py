"""DatasetIO without Ray: JSON rows <-> Arrow, sources (files, data: URIs, http on loopback), the Parquet-parts
store (pagination, typed appends, durability across service instances)."""

from __future__ import annotations

import base64
import http.server
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import deployments.datasets.tables  # noqa: F401
from deployments.datasets.rows import rows_to_table, table_to_rows
from deployments.datasets.sources import load_uri
from deployments.datasets.store import DatasetService
from serve.errors import ConflictError, InvalidRequestError, NotFoundError
from serve.protocol.datasets import AppendRowsRequest, RegisterDatasetRequest
from serve.storage import Database


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
    return DatasetService(Database(f"sqlite:///{tmp_path}/db.sqlite"), tmp_path / "datasets")


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
    again = DatasetService(Database(f"sqlite:///{tmp_path}/db.sqlite"), tmp_path / "datasets")  # a restart
    assert again.iterrows("d", 0, None)["data"] == service.iterrows("d", 0, None)["data"]
    assert not list((tmp_path / "datasets").rglob(".tmp-*"))  # no half-written parts
    again.unregister("d")
    with pytest.raises(NotFoundError):
        service.iterrows("d", 0, 1)
    assert list((tmp_path / "datasets").iterdir()) == []
