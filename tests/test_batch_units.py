"""Batch API pieces without Ray: input validation per line, result records, the SQL store (counts, leases,
no duplicate results), and the UDF's concurrency and cancellation on a fake model call."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

import deployments.batches.tables  # noqa: F401
from deployments.batches.lines import parse_input, response_result
from deployments.batches.store import BatchStore
from deployments.batches.udf import RequestsUDF
from serve.errors import InvalidRequestError
from serve.storage import Database

MODELS = {"m": "llm", "e": "embedding"}
CHAT = "/v1/chat/completions"


def line(cid, url=CHAT, **body):
    return json.dumps({"custom_id": cid, "method": "POST", "url": url,
                       "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}})


def test_parse_input_reports_each_bad_line():
    data = "\n".join([line("a"), "", "{oops", line("b", url="/v1/completions"), line("a"), line("c", model="x"),
                      line("d", temperature=9), line("e", stream=True), json.dumps({"custom_id": "f", "body": 3}),
                      line("g", model="e"), line("h", max_tokens=2)]).encode()
    parsed = parse_input(data, CHAT, MODELS)
    assert [r.custom_id for r in parsed.requests] == ["a", "h"] and parsed.total == 11 - 1  # blank line skipped
    by_id = {f.custom_id: f.record for f in parsed.failures}
    assert by_id[None]["error"] == {"code": "invalid_json_line", "message": by_id[None]["error"]["message"],
                                    "param": None, "line": 3}
    assert by_id["b"]["error"]["code"] == "mismatched_url"
    assert by_id["c"]["response"]["status_code"] == 404
    assert by_id["d"]["response"]["body"]["error"]["param"] == "temperature"
    assert by_id["e"]["response"]["body"]["error"]["param"] == "stream"
    assert by_id["f"]["error"]["code"] == "invalid_body"
    assert by_id["g"]["response"]["body"]["error"]["code"] == "wrong_model_type"
    assert [e["line"] for e in parsed.errors] == [3, 4, 5, 9]  # the duplicate "a" is line 5
    long_id = parse_input("\n".join([line("x" * 513), line("n\x00ul"), line("ok")]).encode(), CHAT, MODELS)
    assert [e["code"] for e in long_id.errors] == ["invalid_custom_id"] * 2
    assert [r.custom_id for r in long_id.requests] == ["ok"]
    override = parse_input(line("z", model="anything").encode(), CHAT, MODELS, override_model="m")
    assert override.requests[0].body["model"] == "m"
    with pytest.raises(InvalidRequestError):
        parse_input(b"", "/v1/moderations", MODELS)


def test_store_counts_leases_and_no_duplicates(tmp_path):
    store = BatchStore(Database(f"sqlite:///{tmp_path}/db.sqlite"))
    now = int(time.time())
    store.insert(id="b1", status="validating", endpoint=CHAT, input_file_id="f", completion_window="24h",
                 created_at=now, expires_at=now + 60, runner="r1", lease_until=time.time() + 30)
    assert not store.claim("b1", "r2", 30) and store.claim("b1", "r1", 30)
    assert store.orphans() == []
    ok = response_result(1, "a", 200, {"usage": {"prompt_tokens": 5, "completion_tokens": 7}})
    bad = response_result(2, "b", 400, {"error": {"message": "no"}})
    store.save_results("b1", [ok, bad])
    store.save_results("b1", [response_result(1, "a", 200, {"usage": {"completion_tokens": 99}})])  # a retry
    assert store.advance("b1", "r1", "in_progress", total=3)
    got = store.get("b1")
    assert got["request_counts"] == {"total": 3, "completed": 1, "failed": 1}
    assert got["usage"]["output_tokens"] == 7 and got["in_progress_at"]
    assert [json.loads(r)["custom_id"] for r in store.records("b1", True)] == ["a"]
    store.request_cancel("b1")
    assert store.stop_requested("b1") and not store.advance("b1", "r1", "completed")  # cancel wins
    with store.db.begin() as c:  # r1 died: its lease runs out
        c.execute(deployments.batches.tables.batches.update().values(lease_until=0))
    assert store.orphans() == ["b1"] and store.claim("b1", "r2", 30) and not store.renew("b1", "r1", 30)
    assert store.advance("b1", "r2", "cancelled")
    with pytest.raises(InvalidRequestError):
        store.insert(id="b2", status="completed", endpoint=CHAT, input_file_id="f", completion_window="24h",
                     created_at=now, expires_at=now)
        store.request_cancel("b2")


class FakeUDF(RequestsUDF):
    """Answers after a delay; records peak concurrency; cancellable through a flag."""

    poll_s = 0.05

    def __init__(self):
        super().__init__(CHAT, MODELS)
        self.inflight = self.peak = 0
        self.stop = False
        self.aborted = 0

    async def call(self, model, method, request):
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await asyncio.sleep(0.3 if request.max_tokens == 1 else 30)
            return {"object": "chat.completion", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
        except asyncio.CancelledError:
            self.aborted += 1
            raise
        finally:
            self.inflight -= 1

    async def cancelled(self):
        return self.stop


def _batch(n, max_tokens):
    return {"line": list(range(1, n + 1)), "custom_id": [f"c{i}" for i in range(n)],
            "body": [json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                 "max_tokens": max_tokens}) for _ in range(n)]}


def test_udf_runs_a_batch_concurrently_and_cancels_in_flight():
    udf = FakeUDF()
    out = asyncio.run(udf(_batch(6, 1)))
    assert out["ok"] == [True] * 6 and udf.peak == 6 and out["output_tokens"] == [1] * 6

    async def cancel_soon():
        task = asyncio.create_task(udf(_batch(4, 2)))
        await asyncio.sleep(0.2)
        udf.stop = True
        return await asyncio.wait_for(task, 5)

    t = time.monotonic()
    out = asyncio.run(cancel_soon())
    assert out["line"] == [] and udf.aborted == 4 and time.monotonic() - t < 5


def test_offline_input_from_parquet_and_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from deployments.batches.offline import read_input

    pq.write_table(pa.table({"prompt": ["a", "b"], "custom_id": ["x", "y"]}), tmp_path / "p.parquet")
    endpoint, parsed = read_input(tmp_path / "p.parquet", "m", None, "prompt", 8)
    assert endpoint == CHAT and [r.custom_id for r in parsed.requests] == ["x", "y"]
    assert parsed.requests[0].body == {"messages": [{"role": "user", "content": "a"}], "max_tokens": 8, "model": "m"}
    endpoint, parsed = read_input(tmp_path / "p.parquet", "m", "/v1/completions", "prompt", None)
    assert parsed.requests[1].body == {"prompt": "b", "model": "m"}
    with pytest.raises(ValueError, match="no column"):
        read_input(tmp_path / "p.parquet", "m", None, "text", None)
    (tmp_path / "in.jsonl").write_text("garbage\n" + line("q", url="/v1/completions", prompt="hi") + "\n")
    endpoint, parsed = read_input(tmp_path / "in.jsonl", "m", None, "prompt", None)
    assert endpoint == "/v1/completions" and len(parsed.requests) == 1 and len(parsed.failures) == 1


def test_steady_rate_ignores_start_up_and_tail():
    from deployments.batches.offline import steady_rate

    # 10 requests of 5 tokens: slow start (model load), 1 request/s in the middle, a slow tail
    samples = [(0.0, 0, 0), (30.0, 1, 5)] + [(30.0 + k, 1 + k, 5 + 5 * k) for k in range(1, 9)] + [(60.0, 10, 50)]
    assert steady_rate(samples, 10) == pytest.approx(5.0)
    assert steady_rate(samples[:3], 10) is None
    assert steady_rate(samples, 10, in_flight=4) == pytest.approx(5.0)
    assert steady_rate(samples, 10, in_flight=5) is None  # 8 requests in the window, 5 could run side by side


def test_steady_rate_is_none_when_results_arrive_together():
    from deployments.batches.offline import Progress

    # 8 requests all in flight for 11 s, their results in two blocks 0.1 s apart: no steady state to measure
    p = Progress(8, peak_in_flight=8)
    p.samples = [(0.0, 0, 0), (10.9, 4, 496), (11.0, 8, 992)]
    p.completed, p.output_tokens = 8, 992
    assert p.summary()["steady_output_tokens_per_s"] is None
