"""DatasetIO through the graph with llama-stack-client 0.2.12: register (rows, jsonl, parquet, csv data: URI,
huggingface:// from the local Hugging Face cache), list, get, iterrows pages, append-rows, unregister, /v1beta
aliases, provider ids and bad input."""

from __future__ import annotations

import base64
import json

import httpx
import llama_stack_client
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from llama_stack_client import LlamaStackClient

from tests.tool_servers import cache_hf_dataset

pytestmark = pytest.mark.graph


@pytest.fixture(scope="module")
def client(base_url) -> LlamaStackClient:
    return LlamaStackClient(base_url=base_url, max_retries=0)


def append(client: LlamaStackClient, dataset_id: str, rows: list[dict]) -> None:
    # llama-stack-client 0.2.12 has no method for append-rows; the route is Llama Stack 0.2's
    client.post(f"/v1/datasetio/append-rows/{dataset_id}", body={"rows": rows}, cast_to=object)


def all_rows(client: LlamaStackClient, dataset_id: str, page: int) -> list[dict]:
    rows, start = [], 0
    while True:
        r = client.datasets.iterrows(dataset_id, start_index=start, limit=page)
        rows += r.data
        if not r.has_more:
            return rows
        start += len(r.data)


def test_jsonl_register_iterrows_append(client, tmp_path):
    src = tmp_path / "qa.jsonl"
    qa = [{"question": f"What is {i} + {i}?", "answer": str(2 * i),
           "messages": [{"role": "user", "content": f"{i}+{i}" if i % 2 else [{"type": "text", "text": "mixed"}]}]}
          for i in range(7)]
    src.write_text("\n".join(json.dumps(r) for r in qa) + "\n")
    ds = client.datasets.register(purpose="eval/question-answer", source={"type": "uri", "uri": f"file://{src}"},
                                  dataset_id="qa-jsonl", metadata={"description": "sums"})
    assert ds.identifier == "qa-jsonl" and ds.source.uri == f"file://{src}" and ds.metadata == {"description": "sums"}
    page = client.datasets.iterrows("qa-jsonl", start_index=0, limit=3)
    assert page.data == qa[:3] and page.has_more
    assert all_rows(client, "qa-jsonl", 3) == qa  # content that is a string in one row and a list in the next
    append(client, "qa-jsonl", [{"question": "new?", "answer": "yes", "source": "appended"}])
    src.unlink()  # the dataset kept its own copy
    rows = all_rows(client, "qa-jsonl", 5)
    assert len(rows) == 8 and rows[-1] == {"question": "new?", "answer": "yes", "messages": None,
                                           "source": "appended"}
    assert client.datasets.iterrows("qa-jsonl", start_index=8).data == []
    assert "qa-jsonl" in [d.identifier for d in client.datasets.list()]


def test_parquet_and_rows_and_csv_sources(client, tmp_path):
    pq.write_table(pa.table({"prompt": ["a", "b", "c"], "score": [0.5, 1.5, 2.5]}), tmp_path / "p.parquet")
    ds = client.datasets.register(purpose="eval/question-answer",
                                  source={"type": "uri", "uri": str(tmp_path / "p.parquet")})
    assert ds.identifier.startswith("dataset-") and ds.provider_id == "localfs"  # Llama Stack's id
    providers = {(p.api, p.provider_id): p.provider_type for p in client.providers.list()}
    assert providers["datasetio", "localfs"] == "inline::localfs"
    assert providers["batches", "ray-data"] == "inline::reference"
    append(client, ds.identifier, [{"prompt": "d", "score": 3}])
    r = client.datasets.iterrows(ds.identifier)
    assert [row["prompt"] for row in r.data] == ["a", "b", "c", "d"] and r.data[-1]["score"] == 3.0
    with pytest.raises(llama_stack_client.BadRequestError):
        append(client, ds.identifier, [{"score": "not a number"}])  # a column keeps its type
    assert len(client.datasets.iterrows(ds.identifier).data) == 4  # a refused append leaves no trace

    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    inline = client.datasets.register(purpose="post-training/messages", source={"type": "rows", "rows": rows},
                                      dataset_id="inline-msgs")
    assert inline.source.rows == rows and client.datasets.iterrows("inline-msgs").data == rows

    csv = base64.b64encode(b"question,answer\nCapital of France?,Paris\nCapital of Peru?,Lima\n").decode()
    c = client.datasets.register(purpose="eval/question-answer",
                                 source={"type": "uri", "uri": f"data:text/csv;base64,{csv}"}, dataset_id="capitals")
    assert client.datasets.retrieve(c.identifier).purpose == "eval/question-answer"
    assert client.datasets.iterrows("capitals").data == [{"question": "Capital of France?", "answer": "Paris"},
                                                         {"question": "Capital of Peru?", "answer": "Lima"}]


def test_beta_prefix_unregister_and_bad_input(client, base_url):
    client.datasets.register(purpose="eval/question-answer", source={"type": "rows", "rows": [{"q": 1}]},
                             dataset_id="beta-ds")
    beta = httpx.get(f"{base_url}/v1beta/datasetio/iterrows/beta-ds", params={"limit": 1}).json()
    assert beta == {"data": [{"q": 1}], "has_more": False, "next_start_index": None}
    assert httpx.post(f"{base_url}/v1beta/datasetio/append-rows/beta-ds", json={"rows": [{"q": 2}]}).status_code == 200
    assert httpx.get(f"{base_url}/v1beta/datasets/beta-ds").json()["identifier"] == "beta-ds"
    client.datasets.unregister("beta-ds")
    for call in (lambda: client.datasets.retrieve("beta-ds"), lambda: client.datasets.iterrows("beta-ds"),
                 lambda: append(client, "beta-ds", [{"q": 3}]), lambda: client.datasets.unregister("beta-ds")):
        with pytest.raises(llama_stack_client.NotFoundError):
            call()
    client.datasets.register(purpose="eval/question-answer", source={"type": "rows", "rows": [{"q": 1}]},
                             dataset_id="dup-ds")
    with pytest.raises(llama_stack_client.ConflictError):
        client.datasets.register(purpose="eval/question-answer", source={"type": "rows", "rows": [{"q": 9}]},
                                 dataset_id="dup-ds")
    assert client.datasets.iterrows("dup-ds").data == [{"q": 1}]
    bad = [{"purpose": "nope", "source": {"type": "rows", "rows": []}},
           {"purpose": "eval/question-answer", "source": {"type": "uri", "uri": "/no/such/file.jsonl"}},
           {"purpose": "eval/question-answer", "source": {"type": "uri", "uri": "huggingface://llamastack/simpleqa"}},
           {"purpose": "eval/question-answer", "source": {"type": "uri", "uri": "data:text/csv;base64,!!"}},
           {"purpose": "eval/question-answer", "source": {"type": "uri", "uri": "data:image/png;base64,AAAA"}}]
    for body in bad:
        r = httpx.post(f"{base_url}/v1/datasets", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(f"{base_url}/v1/datasetio/iterrows/dup-ds", params={"start_index": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "start_index"
    r = httpx.post(f"{base_url}/v1/datasetio/append-rows/dup-ds", json={"rows": []})
    assert r.status_code == 400


def test_huggingface_sources(client, base_url, data_dir):
    """Llama Stack's own test case (simpleqa from the hub): the hub is unreachable and the dataset not cached, a
    clear 400; a dataset in the server's Hugging Face cache registers as the `huggingface` provider's."""
    r = httpx.post(f"{base_url}/v1/datasets", json={"purpose": "eval/messages-answer", "source": {
        "type": "uri", "uri": "huggingface://datasets/llamastack/simpleqa?split=train"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "source.uri", r.text
    message = r.json()["error"]["message"]
    assert "not in the local Hugging Face cache" in message and "could not be reached" in message
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"messages": [json.dumps([{"role": "user", "content": f"q{i}"}]) for i in range(12)],
                             "answer": [f"a{i}" for i in range(12)]}), sink)
    cache_hf_dataset(data_dir / "hf-cache", "acme/simpleqa", {"data/train-00000-of-00001.parquet":
                                                               sink.getvalue().to_pybytes(),
                                                               "data/test-00000-of-00001.parquet": b"PAR1"})
    ds = client.datasets.register(purpose="eval/messages-answer", source={
        "type": "uri", "uri": "huggingface://datasets/acme/simpleqa?split=train"})
    assert ds.provider_id == "huggingface" and ds.source.uri.endswith("?split=train")
    assert [r["answer"] for r in client.datasets.iterrows(ds.identifier, limit=10).data] == [
        f"a{i}" for i in range(10)]
    assert [d.provider_id for d in client.datasets.list() if d.identifier == ds.identifier] == ["huggingface"]
    client.datasets.unregister(ds.identifier)
    assert ds.identifier not in [d.identifier for d in client.datasets.list()]
