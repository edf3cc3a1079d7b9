"""`stackserve bench` end to end against the fake server (outputs: JSON, CSV, markdown, PNG), `bench plot`, and
`bench compare`'s machinery (targets started, health-polled, stopped; ratios) with fake servers as targets."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI

from benchmarks import compare
from serve.cli import main as stackserve

FAKE_SERVER = str(Path(__file__).with_name("fake_openai.py"))


@pytest.fixture
def fake():
    server = FakeOpenAI(ttft_s=0.02, itl_s=0.005).start()
    yield server
    server.stop()


def test_bench_writes_every_output(fake, tmp_path, smollm2_dir):
    out = tmp_path / "run"
    rc = stackserve(["bench", "--base-url", fake.base_url.removesuffix("/v1"), "--tokenizer", str(smollm2_dir),
                     "--workload", "fixed:16:4", "--concurrency", "1,2", "--rate", "50",
                     "--num-requests", "4", "--warmup", "1", "--slo", "ttft:1000", "--slo", "tpot:500",
                     "--no-progress", "--out-dir", str(out)])
    assert rc == 0
    records = json.loads((out / "runs.json").read_text())
    assert len(records) == 3
    rec = records[0]
    assert rec["config"]["model"] == "fake-model"  # found through GET /models
    assert rec["config"]["base_url"] == fake.base_url  # /v1 appended to a bare host:port
    assert rec["config"]["workload"]["name"] == "fixed-16-4" and rec["load_label"] == "c=1"
    assert {"cpu_model", "logical_cores", "memory_gib"} <= set(rec["hardware"])
    assert {"python", "packages", "git"} <= set(rec["software"])
    m = rec["metrics"]
    assert m["completed"] == 4 and m["mean_output_tokens"] == 4 and m["goodput"]["good_requests"] == 4
    assert m["goodput"]["slos_ms"] == {"ttft": 1000.0, "tpot": 500.0}
    assert [r["load_label"] for r in records] == ["c=1", "c=2", "rate=50"]
    assert records[2]["config"]["load"]["mode"] == "rate" and records[2]["metrics"]["send_lag_ms"] is not None
    # fresh prompts per run, identical prompts for the same run index (what makes compare fair)
    assert records[0]["config"]["run_seed"] != records[1]["config"]["run_seed"]
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert len(rows) == 3 and float(rows[0]["ttft_p50_ms"]) > 0
    assert len((out / "requests.jsonl").read_text().splitlines()) == 3 * 4
    md = (out / "summary.md").read_text()
    assert "| fixed-16-4 | c=2 |" in md and "logical cores" in md
    for png in ("throughput_latency.png", "ttft_cdf.png", "itl_cdf.png"):
        assert (out / png).stat().st_size > 10_000
    (out / "ttft_cdf.png").unlink()
    assert stackserve(["bench", "plot", str(out)]) == 0
    assert (out / "ttft_cdf.png").exists()


def test_bench_sends_api_key_and_extra_body(fake, tmp_path, smollm2_dir):
    rc = stackserve(["bench", "--base-url", fake.base_url, "--model", "m1", "--api-key", "sk-x",
                     "--tokenizer", str(smollm2_dir), "--workload", "fixed:8:2", "--num-requests", "1", "--warmup",
                     "0", "--no-ignore-eos", "--extra-body", '{"top_p": 0.5}', "--no-progress", "--no-plots",
                     "--out-dir", str(tmp_path)])
    assert rc == 0
    body = fake.bodies[-1]
    assert body["model"] == "m1" and body["top_p"] == 0.5 and "ignore_eos" not in body


def test_bench_rejects_latency_slos_without_streaming(fake, tmp_path, smollm2_dir, capsys):
    rc = stackserve(["bench", "--base-url", fake.base_url, "--no-stream", "--slo", "ttft:100", "--tokenizer",
                     str(smollm2_dir), "--no-progress", "--out-dir", str(tmp_path)])
    assert rc == 2 and "need streaming" in capsys.readouterr().err


def _record(label: str, load: str, out_tps: float, ttft: float) -> dict:
    dist = {"mean": ttft, "p50": ttft, "p90": ttft, "p99": ttft}
    return {"label": label, "load_label": load, "config": {"workload": {"name": "fixed-128-128"}},
            "metrics": {"output_throughput": out_tps, "request_throughput": out_tps / 128, "ttft_ms": dist,
                        "tpot_ms": dist, "itl_ms": dist, "e2e_ms": dist}}


def test_ratio_table():
    md = compare.ratio_table([_record("vllm", "c=1", 100.0, 50.0), _record("stackserve", "c=1", 80.0, 100.0),
                              _record("stackserve", "c=4", 80.0, 100.0)])
    row = next(line for line in md.splitlines() if line.startswith("| stackserve | fixed-128-128 | c=1"))
    assert row.split(" | ")[3:7] == ["1", "0.80x", "0.80x", "2.00x"]
    assert "c=4" not in md  # no baseline point to compare with
    assert "no results" in compare.ratio_table([_record("stackserve", "c=1", 1.0, 1.0)])


def test_ratio_table_takes_medians_of_repetitions():
    runs = [_record("vllm", "c=1", t, 50.0) for t in (100.0, 90.0, 110.0)]
    runs += [_record("stackserve", "c=1", t, 100.0) for t in (80.0, 99.0, 88.0)]
    row = next(line for line in compare.ratio_table(runs).splitlines() if line.startswith("| stackserve"))
    # median 88 / median 100; per-repetition ratios 0.80, 1.10, 0.80
    assert row.split(" | ")[3:5] == ["3", "0.88x (0.80-1.10)"]


def test_compare_skips_targets_it_cannot_start(tmp_path):
    a = compare.build_parser().parse_args(["--vllm-python", str(tmp_path / "nope"), "--config",
                                           str(tmp_path / "none.yaml")])
    a.rayllm_python = a.vllm_python
    assert "not found" in compare.launch("vllm", a, 1).skip
    assert "not found" in compare.launch("stackserve-vllm", a, 1).skip
    assert "not found" in compare.launch("stackserve", a, 1).skip
    assert "not found" in compare.launch("rayllm", a, 1).skip


def test_stackserve_vllm_target_serves_the_config_on_vllm():
    from serve.config import load_config

    a = compare.build_parser().parse_args(["--vllm-python", sys.executable])
    spec = compare.launch("stackserve-vllm", a, 1234)
    assert spec.python == sys.executable and spec.cmd[:3] == [sys.executable, "-m", "serve.cli"]
    derived = load_config(spec.cmd[spec.cmd.index("--config") + 1])
    original = load_config(a.config)
    assert [m.engine.type for m in derived.models] == ["vllm"] * len(original.models)
    assert [m.engine.max_num_seqs for m in derived.models] == [m.engine.max_num_seqs for m in original.models]
    assert derived.ingress_model() is not None  # as configs/local.yaml: the engine in the Ingress
    composed = load_config(compare.launch("stackserve-vllm-composed", a, 1234).cmd[spec.cmd.index("--config") + 1])
    assert composed.ingress_model() is None and [m.engine.type for m in composed.models] == ["vllm"]


def test_compare_runs_targets_end_to_end(tmp_path, smollm2_dir, monkeypatch):
    """Two fake servers as targets: started, health-polled, benchmarked with one sweep, stopped, ratios."""
    procs = []

    def fake_launch(target, a, port):
        if target == "stackserve-vllm":
            return compare.Launch(skip="slot")
        itl = "0.005" if target == "vllm" else "0.010"  # the "stackserve" fake streams at half the speed
        return compare.Launch([sys.executable, FAKE_SERVER, str(port), a.model_id, "0.02", itl], {}, sys.executable)

    real_start = compare.ServerProcess.start

    def start(self):
        procs.append(real_start(self))
        return procs[-1]

    monkeypatch.setattr(compare, "launch", fake_launch)
    monkeypatch.setattr(compare.ServerProcess, "start", start)
    out = tmp_path / "cmp"
    rc = compare.main(["--targets", "vllm,stackserve-vllm,stackserve", "--model-id", "fake-model",
                       "--tokenizer", str(smollm2_dir), "--workload", "fixed:8:20", "--concurrency", "1",
                       "--num-requests", "3", "--warmup", "0", "--no-ingress", "--no-progress", "--no-plots",
                       "--startup-timeout", "30", "--out-dir", str(out)])
    assert rc == 0
    assert len(procs) == 2 and all(p.proc.poll() is not None for p in procs)  # both stopped
    status = json.loads((out / "targets.json").read_text())
    assert status["vllm"]["status"] == "ok" and status["stackserve"]["status"] == "ok"
    assert status["stackserve-vllm"] == {"status": "skipped", "reason": "slot"}
    ratios = (out / "summary.md").read_text().split("## Ratios to vllm")[1]
    row = next(line for line in ratios.splitlines() if line.startswith("| stackserve | fixed-8-20 | c=1"))
    tpot_ratio = float(row.split(" | ")[7].removesuffix("x"))  # target, workload, load, runs, out tok/s, req/s, TTFT
    assert 1.5 < tpot_ratio < 2.5  # 10 ms vs 5 ms per token
    assert {r["label"] for r in json.loads((out / "runs.json").read_text())} == {"vllm", "stackserve"}
