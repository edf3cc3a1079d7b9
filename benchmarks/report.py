"""Outputs of a benchmark: runs.json (one self-contained record per run), runs.csv, requests.jsonl (every measured
request, for re-plotting), summary.md, and PNG plots (throughput vs latency, TTFT / ITL distributions).

`write_all(out_dir, records, requests)` writes everything; `plot(out_dir)` redraws the plots from the files alone
(`stackserve bench plot DIR`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.client import RequestResult

DIST_KEYS = ("mean", "p50", "p90", "p99")
CSV_DISTS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")


def request_row(run_id: str, r: RequestResult, t0: float) -> dict[str, Any]:
    ms = 1000.0
    return {"run_id": run_id, "index": r.index, "ok": r.ok, "error_type": r.error_type,
            "start_s": round(r.start - t0, 6),
            "scheduled_s": None if r.scheduled is None else round(r.scheduled - t0, 6),
            "ttft_ms": None if r.ttft is None else r.ttft * ms, "e2e_ms": r.e2e * ms,
            "tpot_ms": None if r.tpot is None else r.tpot * ms, "itl_ms": [round(g * ms, 4) for g in r.itl],
            "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens,
            "requested_output_tokens": r.expected_output_tokens, "token_source": r.token_source}


def csv_row(rec: dict[str, Any]) -> dict[str, Any]:
    c, m = rec["config"], rec["metrics"]
    row = {"run_id": rec["run_id"], "label": rec["label"], "scenario": c["scenario"], "workload": c["workload"]["name"],
           "stream": c["stream"], "mode": c["load"]["mode"], "value": c["load"]["value"],
           "burstiness": c["load"]["burstiness"]}
    for key in ("requests", "completed", "failed", "error_rate", "duration_s", "request_throughput",
                "output_throughput", "total_token_throughput", "mean_input_tokens", "mean_output_tokens"):
        row[key] = m[key]
    for dist in CSV_DISTS:
        for k in DIST_KEYS:
            row[f"{dist.removesuffix('_ms')}_{k}_ms"] = m[dist][k]
    row["request_goodput"] = m["goodput"]["request_goodput"]
    row["good_fraction"] = m["goodput"]["good_fraction"]
    row["errors_by_type"] = ";".join(f"{k}={v}" for k, v in m["errors_by_type"].items())
    return row


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(records: list[dict[str, Any]]) -> str:
    head = ("| target | workload | load | req/s | out tok/s | total tok/s | TTFT p50/p99 ms | TPOT p50/p99 ms "
            "| ITL p50/p99 ms | E2E p50/p99 ms | goodput req/s | errors |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for rec in records:
        m, c = rec["metrics"], rec["config"]
        errs = ", ".join(f"{k} {v}" for k, v in m["errors_by_type"].items()) or "0"
        lines.append(
            f"| {rec['label']} | {c['workload']['name']} | {rec['load_label']} | {_fmt(m['request_throughput'], 2)} "
            f"| {_fmt(m['output_throughput'])} | {_fmt(m['total_token_throughput'])} "
            + " ".join(f"| {_fmt(m[d]['p50'])} / {_fmt(m[d]['p99'])}" for d in CSV_DISTS)
            + f" | {_fmt(m['goodput']['request_goodput'], 2)} | {errs} |")
    return "\n".join(lines)


def environment_md(rec: dict[str, Any]) -> str:
    hw, sw = rec["hardware"], rec["software"]
    pk = ", ".join(f"{k} {v}" for k, v in sw["packages"].items())
    gpus = "; ".join(hw["gpus"]) or "none"
    git = sw["git"]
    return (f"- hardware: {hw['cpu_model']}, {hw['logical_cores']} logical cores ({hw['usable_cores']} usable), "
            f"{hw['memory_gib']} GiB RAM, GPUs: {gpus}\n"
            f"- client software: Python {sw['python']}, {pk}; git {git['commit'] or '?'}"
            f"{' (dirty)' if git['dirty'] else ''}\n")


def summary_md(records: list[dict[str, Any]], title: str = "Benchmark") -> str:
    if not records:
        return f"# {title}\n\nNo runs.\n"
    c = records[0]["config"]
    parts = [f"# {title}\n", environment_md(records[0]),
             f"- scenario: {c['scenario']}, stream: {c['stream']}, ignore_eos: {c['ignore_eos']}, seed: {c['seed']}, "
             f"SLOs (ms): {records[0]['metrics']['goodput']['slos_ms'] or 'none'}\n",
             markdown_table(records), ""]
    notes = [f"- {r['run_id']}: {n}" for r in records for n in r.get("notes", [])]
    if notes:
        parts += ["Notes:\n", *notes, ""]
    return "\n".join(parts) + "\n"


def write_all(out_dir: Path, records: list[dict[str, Any]], requests: Iterable[dict[str, Any]],
              title: str = "Benchmark", extra_md: str = "", plots: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "runs.json").write_text(json.dumps(records, indent=2) + "\n")
    with open(out_dir / "requests.jsonl", "w") as f:
        for row in requests:
            f.write(json.dumps(row) + "\n")
    rows = [csv_row(r) for r in records]
    if rows:
        with open(out_dir / "runs.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    (out_dir / "summary.md").write_text(summary_md(records, title) + extra_md)
    files = [out_dir / n for n in ("runs.json", "runs.csv", "requests.jsonl", "summary.md")]
    return files + (plot(out_dir) if plots else [])


def _series_key(rec: dict[str, Any]) -> str:
    c = rec["config"]
    return f"{rec['label']} {c['workload']['name']} {c['load']['mode']}"


def plot(out_dir: Path) -> list[Path]:
    """throughput_latency.png, ttft_cdf.png, itl_cdf.png from runs.json and requests.jsonl in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    records = json.loads((out_dir / "runs.json").read_text())
    if not records:
        return []
    written = []
    series: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        series.setdefault(_series_key(rec), []).append(rec)
    generates = any(r["metrics"]["ttft_ms"]["n"] for r in records)
    panels = [("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("e2e_ms", "E2E latency")] if generates else [
        ("e2e_ms", "latency")]
    xkey, xlabel = ("output_throughput", "output tokens/s") if generates else ("request_throughput", "requests/s")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (key, name) in zip(axes[0], panels, strict=True):
        for i, (label, recs) in enumerate(series.items()):
            recs = sorted(recs, key=lambda r: r["metrics"][xkey])
            xs = [r["metrics"][xkey] for r in recs]
            color = f"C{i % 10}"
            for pct, style in (("p50", "-o"), ("p99", "--x")):
                ys = [r["metrics"][key][pct] for r in recs]
                if any(y is not None for y in ys):
                    ax.plot(xs, [np.nan if y is None else y for y in ys], style, color=color, label=f"{label} {pct}")
            for x, r in zip(xs, recs, strict=True):
                ax.annotate(r["load_label"], (x, r["metrics"][key]["p50"] or 0), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{name} (ms)")
        ax.set_title(f"{name} vs throughput")
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "throughput_latency.png", dpi=120)
    plt.close(fig)
    written.append(out_dir / "throughput_latency.png")

    if not generates or not (out_dir / "requests.jsonl").exists():
        return written
    per_run: dict[str, list[dict[str, Any]]] = {}
    with open(out_dir / "requests.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if row["ok"]:
                per_run.setdefault(row["run_id"], []).append(row)
    names = {r["run_id"]: f"{r['label']} {r['config']['workload']['name']} {r['load_label']}" for r in records}
    for key, title, fname in (("ttft_ms", "TTFT", "ttft_cdf.png"), ("itl_ms", "inter-token latency", "itl_cdf.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for run_id, rows in per_run.items():
            vals = [v for row in rows for v in (row[key] if isinstance(row[key], list) else [row[key]])
                    if v is not None]
            if vals:
                vals = np.sort(np.asarray(vals))
                ax.step(vals, np.arange(1, len(vals) + 1) / len(vals), where="post", label=names.get(run_id, run_id))
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} (ms, log scale)")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"{title} distribution (CDF)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=120)
        plt.close(fig)
        written.append(out_dir / fname)
    return written
