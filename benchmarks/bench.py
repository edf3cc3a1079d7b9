"""`stackserve bench`: a load generator for any OpenAI-compatible server (stackserve, vLLM, Ray Serve LLM, Llama
Stack, hosted services): a sweep of workloads x load points, each run recorded with its hardware and software.

    stackserve bench --base-url http://127.0.0.1:8321/v1 --workload fixed:128:128 --concurrency 1,4,16,64 \\
        --num-requests 200 --slo ttft:1000 --slo tpot:100
    stackserve bench --workload chat --rate 1,2,4 --burstiness 0.5 --duration 60 --max-concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp

from benchmarks import report, sysinfo
from benchmarks.load import LoadGenerator, LoadSpec
from benchmarks.metrics import SLO_METRICS, parse_slos, summarize
from benchmarks.scenarios import SCENARIOS, RequestOptions
from benchmarks.workloads import DEFAULT_TOKENIZER, PromptMaker, WorkloadSpec, generate, load_tokenizer, parse_workload

DEFAULT_BASE_URL = "http://127.0.0.1:8321/v1"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class BenchConfig:
    """Everything one sweep needs; `stackserve bench` fills it from flags, `compare` once per target."""

    base_url: str = DEFAULT_BASE_URL
    model: str | None = None
    api_key: str | None = None
    label: str | None = None
    scenario: str = "chat"
    stream: bool = True
    workloads: list[WorkloadSpec] = field(default_factory=lambda: [parse_workload("fixed:128:128")])
    concurrency: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    burstiness: float = 1.0
    max_concurrency: int | None = None
    num_requests: int | None = 50
    duration_s: float | None = None
    warmup_requests: int = 2
    max_time_s: float = 600.0
    request_timeout_s: float = 300.0
    seed: int = 0
    ignore_eos: bool = True
    temperature: float | None = 0.0
    extra_body: dict[str, Any] = field(default_factory=dict)
    slos_ms: dict[str, float] = field(default_factory=dict)
    tokenizer: str = DEFAULT_TOKENIZER
    progress: bool = True
    deadline: float | None = None  # time.monotonic() bound on the whole sweep: later runs are cut or skipped

    def load_specs(self) -> list[LoadSpec]:
        common = {"num_requests": self.num_requests, "duration_s": self.duration_s,
                  "warmup_requests": self.warmup_requests, "max_time_s": self.max_time_s,
                  "request_timeout_s": self.request_timeout_s, "burstiness": self.burstiness}
        specs = [LoadSpec("concurrency", c, **common) for c in self.concurrency]
        specs += [LoadSpec("rate", r, max_concurrency=self.max_concurrency, **common) for r in self.rates]
        return specs or [LoadSpec("concurrency", 1, **common)]


def normalize_base_url(url: str) -> str:
    """An OpenAI base URL (…/v1); a bare host:port gets /v1 appended."""
    url = url.rstrip("/")
    if not urlparse(url).path:
        url += "/v1"
    return url


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def server_models(base_url: str, api_key: str | None, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"{base_url}/models", headers=auth_headers(api_key),
                                                   timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        resp.raise_for_status()
        return (await resp.json(content_type=None)).get("data") or []


def _json_value(v: float) -> float | str:
    return "inf" if isinstance(v, float) and math.isinf(v) else v


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", s).strip("_")


class _Progress:
    """A tqdm bar over measured requests (no-op when disabled or tqdm is missing)."""

    def __init__(self, enabled: bool, total: int | None, desc: str):
        self.bar = None
        self.errors = 0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="req", file=sys.stderr, dynamic_ncols=True, leave=True)

    def done(self, r) -> None:
        if self.bar is None or r.warmup:
            return
        self.errors += not r.ok
        self.bar.update(1)
        if self.errors:
            self.bar.set_postfix(errors=self.errors, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def run_sweep(cfg: BenchConfig, log=print) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every workload x load point; returns (run records, per-request rows)."""
    scenario = SCENARIOS[cfg.scenario]()
    stream = cfg.stream and scenario.streams
    if not stream and {"ttft", "tpot", "itl"} & set(cfg.slos_ms):
        raise ValueError("TTFT/TPOT/ITL SLOs need streaming (--stream, and a scenario that streams)")
    base_url = normalize_base_url(cfg.base_url)
    model = cfg.model
    server: dict[str, Any] = {}
    try:
        models = await server_models(base_url, cfg.api_key)
        model = model or (models[0]["id"] if models else None)
        server = {"model": next((m for m in models if m.get("id") == model), None)}
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        if model is None:
            raise RuntimeError(f"could not list models at {base_url}/models ({e}); pass --model") from e
    if model is None:
        raise RuntimeError(f"{base_url}/models lists no model; pass --model")
    label = cfg.label or urlparse(base_url).netloc
    t = time.time()
    maker = PromptMaker(load_tokenizer(cfg.tokenizer))
    log(f"tokenizer {cfg.tokenizer} loaded in {time.time() - t:.1f}s"
        + ("" if maker.exact else " (no single-token word pool: prompt lengths are approximate)"))
    hw, sw = sysinfo.hardware(), sysinfo.software()
    opts = RequestOptions(model=model, stream=stream, ignore_eos=cfg.ignore_eos and scenario.generates,
                          temperature=cfg.temperature if scenario.generates else None, extra_body=cfg.extra_body)
    url = base_url + scenario.route(opts)
    records, rows = [], []
    run_index = 0
    for wl in cfg.workloads:
        for spec in cfg.load_specs():
            run_seed = cfg.seed * 1000 + run_index  # fresh prompts per run: no cross-run prefix-cache hits
            run_index += 1
            spec.seed = run_seed
            if cfg.deadline is not None:
                left = cfg.deadline - time.monotonic()
                if left < 5:
                    log(f"skipping {wl.name} {spec.label}: the sweep's time bound is reached")
                    continue
                spec.max_time_s = min(spec.max_time_s, left)
            n_items = spec.num_requests or _pool_size(spec)
            items = generate(wl, n_items, maker, run_seed)
            warm = generate(wl, spec.warmup_requests, maker, run_seed + 500_000) if spec.warmup_requests else []
            run_id = _slug(f"{label}-{cfg.scenario}-{wl.name}-{spec.label}")
            bar = _Progress(cfg.progress, spec.num_requests, f"{label} {wl.name} {spec.label}")
            gen = LoadGenerator(url, scenario, opts, auth_headers(cfg.api_key), on_done=bar.done)
            started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017
            load_before = sysinfo.load_average()
            try:
                outcome = await gen.run(spec, items, warm)
            finally:
                bar.close()
            metrics = summarize(outcome.results, outcome.duration_s, cfg.slos_ms, maker.count)
            rec = {
                "run_id": run_id, "label": label, "load_label": spec.label, "timestamp": started_at,
                "config": {"base_url": base_url, "model": model, "scenario": cfg.scenario, "stream": stream,
                           "ignore_eos": opts.ignore_eos, "temperature": opts.temperature,
                           "extra_body": cfg.extra_body, "seed": cfg.seed, "run_seed": run_seed,
                           "workload": wl.to_dict(), "tokenizer": cfg.tokenizer,
                           "load": {k: _json_value(v) for k, v in asdict(spec).items() if k != "seed"}},
                "hardware": hw, "software": sw, "server": server, "metrics": metrics,
                "host_load_avg_1m": {"start": load_before, "end": sysinfo.load_average()},
                "wall_s": outcome.wall_s, "hit_time_limit": outcome.hit_time_limit, "notes": outcome.notes,
            }
            if (load_before or 0) > (hw["usable_cores"] or 1):
                rec["notes"].append(f"1-min load average {load_before:g} on {hw['usable_cores']} cores when the run "
                                    "started (it includes earlier runs of this sweep): other processes may have "
                                    "competed for CPU")
            records.append(rec)
            rows += [report.request_row(run_id, r, outcome.started) for r in outcome.results]
            log(one_line(rec))
    return records, rows


def _pool_size(spec: LoadSpec) -> int:
    """How many distinct prompts a duration-bound run cycles through."""
    if spec.mode == "rate" and not math.isinf(spec.value) and spec.duration_s:
        return int(min(max(spec.value * spec.duration_s * 1.2 + 16, 64), 4000))
    return 2000


def one_line(rec: dict[str, Any]) -> str:
    m = rec["metrics"]

    def p(d: str, k: str = "p50") -> str:
        v = m[d][k]
        return "-" if v is None else f"{v:.1f}"

    errs = f" errors {m['errors_by_type']}" if m["failed"] else ""
    return (f"{rec['run_id']}: {m['completed']}/{m['requests']} ok in {m['duration_s']:.2f}s, "
            f"{m['request_throughput']:.2f} req/s, {m['output_throughput']:.1f} out tok/s, "
            f"TTFT p50 {p('ttft_ms')} ms, TPOT p50 {p('tpot_ms')} ms, ITL p50 {p('itl_ms')} ms, "
            f"E2E p50 {p('e2e_ms')} ms{errs}")


def _floats(s: str) -> list[float]:
    return [float("inf") if x.strip() in ("inf", "max") else float(x) for x in s.split(",") if x.strip()]


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Workload and load flags shared by `bench` and `bench compare`."""
    g = p.add_argument_group("workload")
    g.add_argument("--scenario", choices=sorted(SCENARIOS), default="chat")
    g.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True,
                   help="stream responses (needed for TTFT/TPOT/ITL; usage requested via stream_options)")
    g.add_argument("--workload", action="append", type=parse_workload, metavar="SPEC",
                   help="fixed:IN:OUT | chat[:IN_MEDIAN:OUT_MEDIAN] | prefix:PREFIX:SUFFIX:OUT[:GROUPS]; "
                        "repeatable (default fixed:128:128)")
    g.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True,
                   help="send ignore_eos: true for exact output lengths (stackserve, vLLM); --no-ignore-eos for "
                        "servers that reject unknown fields")
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--extra-body", type=json.loads, default={}, metavar="JSON",
                   help="fields merged into every request body")
    g.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                   help="local HF tokenizer directory for prompts and token counts (default: SmolLM2's)")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("load")
    g.add_argument("--concurrency", type=_ints, default=[], metavar="N,N,...",
                   help="closed-loop sweep, e.g. 1,4,16,64 (default 1 when no --rate)")
    g.add_argument("--rate", type=_floats, default=[], metavar="R,R,...",
                   help="open-loop sweep in requests/s (Poisson; 'inf' sends all at once)")
    g.add_argument("--burstiness", type=float, default=1.0,
                   help="gamma shape of inter-arrival gaps: 1 Poisson, <1 burstier, >1 more regular")
    g.add_argument("--max-concurrency", type=int, default=None, help="open loop: cap on requests in flight")
    g.add_argument("--num-requests", type=int, default=None, help="measured requests per run (default 50)")
    g.add_argument("--duration", type=float, default=None, help="seconds to keep issuing requests per run")
    g.add_argument("--warmup", type=int, default=2, help="warm-up requests per run (not measured)")
    g.add_argument("--max-time", type=float, default=600.0,
                   help="hard bound per run in seconds: in-flight requests are cancelled and counted as aborted")
    g.add_argument("--request-timeout", type=float, default=300.0)
    g.add_argument("--slo", action="append", default=[], metavar="NAME:MS",
                   help=f"goodput SLO, repeatable: {', '.join(SLO_METRICS)} (e.g. --slo ttft:500 --slo tpot:50)")
    p.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results/<kind>-<timestamp>")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-plots", action="store_true")


def config_from_args(a: argparse.Namespace, **over: Any) -> BenchConfig:
    num = a.num_requests if a.num_requests is not None else (None if a.duration is not None else 50)
    cfg = BenchConfig(
        scenario=a.scenario, stream=a.stream, workloads=a.workload or [parse_workload("fixed:128:128")],
        concurrency=a.concurrency, rates=a.rate, burstiness=a.burstiness, max_concurrency=a.max_concurrency,
        num_requests=num, duration_s=a.duration, warmup_requests=a.warmup, max_time_s=a.max_time,
        request_timeout_s=a.request_timeout, seed=a.seed, ignore_eos=a.ignore_eos, temperature=a.temperature,
        extra_body=a.extra_body, slos_ms=parse_slos(a.slo), tokenizer=a.tokenizer, progress=not a.no_progress)
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def default_out_dir(kind: str) -> Path:
    return RESULTS_DIR / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stackserve bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="OpenAI base URL (…/v1, or …/v1/openai/v1)")
    p.add_argument("--model", default=None, help="model id (default: the first of GET /models)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="default $OPENAI_API_KEY")
    p.add_argument("--label", default=None, help="name of the target in reports (default host:port)")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(a, base_url=a.base_url, model=a.model, api_key=a.api_key, label=a.label)
        records, rows = asyncio.run(run_sweep(cfg))
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = a.out_dir or default_out_dir("bench")
    files = report.write_all(out, records, rows, title=f"stackserve bench: {records[0]['label']}",
                             plots=not a.no_plots)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0 if all(r["metrics"]["completed"] for r in records) else 1
