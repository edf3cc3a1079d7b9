"""The OpenAI Batch API through the graph (real SmolLM2, MiniLM, Ray Data, SQL) with the openai SDK, and the
offline `stackserve batch run` CLI on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import openai
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openai import OpenAI

from tests.conftest import MINILM, SMOLLM2, llm_stats

pytestmark = pytest.mark.graph

ROOT = Path(__file__).resolve().parents[1]
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0)


def chat_line(custom_id: str, content: str, max_tokens: int = 4, **extra) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": CHAT,
            "body": {"model": SMOLLM2, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                     "temperature": 0, **extra}}


def upload(client: OpenAI, lines: list, name: str = "batch.jsonl") -> str:
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    return client.files.create(file=(name, text.encode()), purpose="batch").id


def wait_for(client: OpenAI, batch_id: str, statuses: set[str], timeout: float = 300):
    deadline = time.time() + timeout
    b = None
    while time.time() < deadline:
        try:
            b = client.batches.retrieve(batch_id)
        except openai.InternalServerError as e:  # 503 while a killed replica is being replaced
            assert e.status_code == 503, e
            time.sleep(0.5)
            continue
        if b.status in statuses:
            return b
        time.sleep(0.5)
    raise TimeoutError(f"batch {batch_id} stayed {b and b.status}: {b and b.request_counts}")


def jsonl(client: OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines() if x.strip()]


def test_mixed_batch_completes_with_output_and_error_files(client):
    good = [chat_line(f"ok-{i}", f"Say the number {i}.") for i in range(6)]
    lines = [good[0], good[1], "{not json", chat_line("wrong-url", "hi") | {"url": "/v1/completions"}, good[2],
             chat_line("no-such-model", "hi") | {"body": {"model": "nope", "messages": [{"role": "user",
                                                                                         "content": "hi"}]}},
             chat_line("bad-temperature", "hi", temperature=7), good[3], chat_line("ok-0", "duplicate id"),
             good[4], good[5]]
    batch = client.batches.create(input_file_id=upload(client, lines), endpoint=CHAT, completion_window="24h",
                                  metadata={"suite": "graph"})
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"suite": "graph"}
    done = wait_for(client, batch.id, {"completed", "failed"})
    assert done.status == "completed", done.errors
    assert done.request_counts.total == 11 and done.request_counts.completed == 6 and done.request_counts.failed == 5
    assert done.completed_at and done.in_progress_at and done.finalizing_at and done.model == SMOLLM2
    assert done.usage.output_tokens > 0 and done.usage.input_tokens > 0
    out = jsonl(client, done.output_file_id)
    assert [r["custom_id"] for r in out] == [f"ok-{i}" for i in range(6)]  # input order, custom_id kept
    for r in out:
        assert r["response"]["status_code"] == 200 and r["error"] is None
        assert r["response"]["body"]["object"] == "chat.completion"
        assert r["response"]["body"]["usage"]["completion_tokens"] <= 4
    errors = {r["custom_id"]: r for r in jsonl(client, done.error_file_id)}
    assert set(errors) == {None, "wrong-url", "no-such-model", "bad-temperature", "ok-0"}
    assert errors[None]["error"]["code"] == "invalid_json_line" and errors[None]["error"]["line"] == 3
    assert errors["wrong-url"]["error"]["code"] == "mismatched_url"
    assert errors["ok-0"]["error"]["code"] == "duplicate_custom_id"
    assert errors["no-such-model"]["response"]["status_code"] == 404
    assert errors["no-such-model"]["response"]["body"]["error"]["code"] == "model_not_found"
    assert errors["bad-temperature"]["response"]["status_code"] == 400
    assert errors["bad-temperature"]["response"]["body"]["error"]["param"] == "temperature"
    assert {e.line for e in done.errors.data} == {3, 4, 9}  # unusable lines are listed with their numbers
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"


def test_completions_and_embeddings_batches(client):
    comp = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions",
             "body": {"model": SMOLLM2, "prompt": f"{i} + {i} =", "max_tokens": 3}} for i in range(3)]
    emb = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": MINILM, "input": [f"text {i}", "another"]}} for i in range(3)]
    emb.append({"custom_id": "llm-as-embedder", "method": "POST", "url": "/v1/embeddings",
                "body": {"model": SMOLLM2, "input": "x"}})
    b1 = client.batches.create(input_file_id=upload(client, comp), endpoint="/v1/completions", completion_window="24h")
    b2 = client.batches.create(input_file_id=upload(client, emb), endpoint="/v1/embeddings", completion_window="24h")
    d1, d2 = wait_for(client, b1.id, {"completed", "failed"}), wait_for(client, b2.id, {"completed", "failed"})
    assert d1.status == d2.status == "completed"
    assert [r["response"]["body"]["object"] for r in jsonl(client, d1.output_file_id)] == ["text_completion"] * 3
    vectors = [r["response"]["body"]["data"] for r in jsonl(client, d2.output_file_id)]
    assert len(vectors) == 3 and all(len(v) == 2 and len(v[0]["embedding"]) == 384 for v in vectors)
    wrong = jsonl(client, d2.error_file_id)
    assert [w["custom_id"] for w in wrong] == ["llm-as-embedder"]
    assert wrong[0]["response"]["body"]["error"]["code"] == "wrong_model_type"


def test_cancel_mid_run_stops_promptly(client, base_url):
    lines = [chat_line(f"long-{i}", f"Write a long story number {i}.", max_tokens=48, ignore_eos=True)
             for i in range(48)]
    batch = client.batches.create(input_file_id=upload(client, lines), endpoint=CHAT, completion_window="24h")
    deadline = time.time() + 240
    while client.batches.retrieve(batch.id).request_counts.completed < 1:
        assert time.time() < deadline, "no request finished"
        time.sleep(0.3)
    assert llm_stats("stackserve", SMOLLM2)["running"] > 0  # the batch keeps the engine busy
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = wait_for(client, batch.id, {"cancelled"}, timeout=60)
    assert 1 <= done.request_counts.completed < 48 and done.cancelled_at
    assert len(jsonl(client, done.output_file_id)) == done.request_counts.completed  # partial results delivered
    deadline = time.time() + 30  # in-flight requests were aborted in the engine, not left to run out
    while llm_stats("stackserve", SMOLLM2)["running"] > 0:
        assert time.time() < deadline, "the engine kept running the cancelled batch"
        time.sleep(0.5)
    again = client.batches.cancel(batch.id)
    assert again.status == "cancelled"


def test_job_survives_a_replica_restart(client):
    import ray

    n = 80  # more lines than the job keeps in flight (2 x max_num_seqs = 32), so the kill lands mid-job
    lines = [chat_line(f"r-{i}", f"Name a colour, {i}.", max_tokens=8, ignore_eos=True) for i in range(n)]
    batch = client.batches.create(input_file_id=upload(client, lines), endpoint=CHAT, completion_window="24h")
    deadline = time.time() + 240
    while (seen := client.batches.retrieve(batch.id)).request_counts.completed < 2:
        assert time.time() < deadline
        time.sleep(0.3)
    assert seen.status == "in_progress" and seen.request_counts.completed < n
    names = [a for a in ray.util.list_named_actors(all_namespaces=True)
             if "#Batches#" in a["name"] and "stackserve" in a["name"]]
    assert len(names) == 1
    ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=True)
    done = wait_for(client, batch.id, {"completed", "failed"}, timeout=400)
    assert done.status == "completed"
    out = jsonl(client, done.output_file_id)
    ids = [r["custom_id"] for r in out]
    assert sorted(ids) == sorted(f"r-{i}" for i in range(n)) and len(ids) == n  # no line lost or doubled
    assert done.request_counts.completed == n and done.request_counts.failed == 0


def test_list_pagination_and_bad_input(client, base_url):
    import httpx

    fid = upload(client, [chat_line("p", "hi")])
    ids = [client.batches.create(input_file_id=fid, endpoint=CHAT, completion_window="24h").id for _ in range(3)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    second = client.batches.list(limit=2, after=first.data[-1].id)
    assert second.data[0].id == ids[0]
    for bid in ids:
        wait_for(client, bid, {"completed"})
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.create(input_file_id=fid, endpoint="/v1/moderations", completion_window="24h")
    assert e.value.body["code"] == "invalid_endpoint"
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=fid, endpoint=CHAT, completion_window="48h")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    other = client.files.create(file=("notes.txt", b"hello"), purpose="assistants").id
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=other, endpoint=CHAT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(ids[0])  # completed
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", b"{}"), purpose="batch_output")  # only the server writes those
    r = httpx.post(f"{base_url}/v1/openai/v1/batches", json={"input_file_id": fid, "endpoint": CHAT})
    assert r.status_code == 400 and r.json()["error"]["param"] == "completion_window"
    broken = client.batches.create(input_file_id=upload(client, ["nope", "[1]", json.dumps({"method": "POST"})]),
                                   endpoint=CHAT, completion_window="24h")
    failed = wait_for(client, broken.id, {"failed", "completed"})
    assert failed.status == "failed" and [e.line for e in failed.errors.data] == [1, 2, 3]
    assert failed.output_file_id is None and failed.request_counts.total == 3


def _tiny_config(path: Path, tiny_model_dir: Path) -> Path:
    path.write_text(json.dumps({"models": [{
        "model_id": "tiny", "source": str(tiny_model_dir),
        "engine": {"max_num_seqs": 4, "max_model_len": 512, "kv_cache_tokens": 4096},
        "deployment": {"ray_actor_options": {"num_cpus": 0.05}}}]}))
    return path


def test_cli_offline_jsonl_and_parquet(ray_serve, tiny_model_dir, tmp_path):
    import ray

    cfg = _tiny_config(tmp_path / "tiny.yaml", tiny_model_dir)
    lines = [json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/completions",
                         "body": {"model": "ignored-by-cli", "prompt": f"hello {i}", "max_tokens": 5,
                                  "ignore_eos": True}}) for i in range(10)] + ["oops"]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"prompt": [f"question {i}" for i in range(7)], "custom_id": [f"p{i}" for i in range(7)]}),
                   tmp_path / "in.parquet")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    for name, extra in (("in.jsonl", []), ("in.parquet", ["--max-tokens", "3"])):
        out = tmp_path / f"{name}.out.jsonl"
        proc = subprocess.run([sys.executable, "-m", "serve.cli", "batch", "run", str(tmp_path / name), "-o", str(out),
                               "--model", "tiny", "--config", str(cfg), *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout[proc.stdout.index("{"):])
        records = [json.loads(x) for x in out.read_text().splitlines()]
        errors = [json.loads(x) for x in out.with_name(f"{name}.out.errors.jsonl").read_text().splitlines()]
        if name == "in.jsonl":
            assert [r["custom_id"] for r in records] == [f"q{i}" for i in range(10)]
            assert all(r["response"]["body"]["usage"]["completion_tokens"] == 5 for r in records)
            assert summary["output_tokens"] == 50 and summary["failed"] == 1
            assert errors[0]["error"]["code"] == "invalid_json_line"
        else:
            assert [r["custom_id"] for r in records] == [f"p{i}" for i in range(7)] and errors == []
            assert all(r["response"]["body"]["object"] == "chat.completion" for r in records)
            assert summary["completed"] == 7
        assert "req" in proc.stderr  # the progress bar
