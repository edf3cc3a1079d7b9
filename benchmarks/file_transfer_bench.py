"""Upload and download of one large file through the running graph (HTTP entry -> ingress -> blob store) on each
blob store backend: MiB/s, and the peak RSS of the ingress, VectorIO and HTTP entry ("proxy": the haproxy process on
the default data plane, Serve's Python proxy with `--data-plane serve_proxy`) during each transfer.

Peak RSS is the kernel's VmHWM of each process, reset just before a transfer (`echo 5 > /proc/PID/clear_refs`) and
read just after, so a transfer's peak is measured on its own, not the replica's start-up. Run it once per code
version to compare (the graph's processes import `serve` from PYTHONPATH):

    RAY_TMPDIR=$(mktemp -d) PYTHONPATH=. python -m benchmarks.file_transfer_bench --size-mib 100 \\
        --backends local,sqlite,postgresql --label after --json /tmp/after.json
    RAY_TMPDIR=$(mktemp -d) PYTHONPATH=/path/to/old/checkout python benchmarks/file_transfer_bench.py ... --label before
    python -m benchmarks.file_transfer_bench --report /tmp/before.json /tmp/after.json --out benchmarks/results/x.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
PROCESSES = ("Ingress", "VectorIO", "proxy")
EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


def bench_config(backend: str, data_dir: Path, database_url: str | None, size: int):
    """The smallest graph that serves Files: ingress, one Embeddings and one VectorIO replica, no LLM."""
    from serve.config import parse_config

    light = {"ray_actor_options": {"num_cpus": 0.05}}
    storage = {"local": {}, "sqlite": {"blob_url": "sql"},
               "postgresql": {"url": database_url, "blob_url": "sql"}}[backend]
    return parse_config({
        "data_dir": str(data_dir), "storage": storage, "models": [],
        "server": {"request_timeout_s": 600},
        "ingress": light,
        "embedding_models": [{"model_id": EMBEDDER, "source": EMBEDDER, "deployment": light}],
        "vector_io": {"max_file_bytes": max(size, 100 * MiB), "deployment": light},
    })


def _haproxy_pid(manager_pid: int) -> int:
    """The newest haproxy process under Serve's HAProxyManager actor (a reload starts a new one)."""
    import psutil

    procs = [p for p in psutil.Process(manager_pid).children(recursive=True) if p.name() == "haproxy"]
    return max(procs, key=lambda p: p.create_time()).pid


def _pids(app: str) -> dict[str, int]:
    """The PIDs of the app's Ingress and VectorIO replicas and of the HTTP entry (Serve's proxy actor, or the haproxy
    process its HAProxyManager actor runs), from the GCS's actor table (Ray's state API needs the dashboard, which
    the bench does not start)."""
    from ray._private.state import actors

    names = {f"ServeReplica:{app}:Ingress": "Ingress", f"ServeReplica:{app}:VectorIO": "VectorIO",
             "ProxyActor": "proxy", "HAProxyManager": "haproxy-manager"}
    pids = {names[a["ActorClassName"]]: a["Pid"] for a in actors(actor_state_name="ALIVE").values()
            if a["ActorClassName"] in names}
    if "haproxy-manager" in pids:
        pids["proxy"] = _haproxy_pid(pids.pop("haproxy-manager"))
    return pids


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peaks(pids: dict[str, int]) -> dict[str, float]:
    """Reset each process's peak RSS to its current RSS; returns the current RSS in MiB."""
    for pid in pids.values():
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return {name: _status_kib(pid, "VmRSS") / 1024 for name, pid in pids.items()}


def _peaks(pids: dict[str, int]) -> dict[str, float]:
    return {name: _status_kib(pid, "VmHWM") / 1024 for name, pid in pids.items()}


def _source_file(size: int, folder: Path) -> tuple[Path, str]:
    path, digest = folder / "upload.bin", hashlib.sha256()
    with path.open("wb") as f:
        block = os.urandom(MiB)
        for i in range(0, size, MiB):
            piece = block[: min(MiB, size - i)]
            f.write(piece)
            digest.update(piece)
    return path, digest.hexdigest()


def transfer_once(base: str, src: Path, digest: str, size: int, pids: dict[str, int]) -> dict:
    import httpx

    row: dict = {}
    row["rss_before_mib"] = _reset_peaks(pids)
    t = time.perf_counter()
    with src.open("rb") as f:  # httpx streams a file object from disk, with a Content-Length
        r = httpx.post(f"{base}/v1/files", files={"file": ("upload.bin", f)}, data={"purpose": "user_data"},
                       timeout=600)
    row["upload_s"] = time.perf_counter() - t
    r.raise_for_status()
    row["upload_peak_mib"] = _peaks(pids)
    file_id = r.json()["id"]
    _reset_peaks(pids)
    back, got = hashlib.sha256(), 0
    t = time.perf_counter()
    with httpx.stream("GET", f"{base}/v1/files/{file_id}/content", timeout=600) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_bytes(MiB):
            back.update(chunk)
            got += len(chunk)
    row["download_s"] = time.perf_counter() - t
    row["download_peak_mib"] = _peaks(pids)
    if got != size or back.hexdigest() != digest:
        raise RuntimeError(f"download differs from the upload ({got} of {size} bytes)")
    httpx.delete(f"{base}/v1/files/{file_id}", timeout=120).raise_for_status()
    return row


def run_backend(base: str, backend: str, size: int, rounds: int, work: Path, database_url: str | None) -> dict:
    from ray import serve

    from serve.graph import build_graph

    app = f"ft-{backend}"
    data_dir = work / app
    cfg = bench_config(backend, data_dir, database_url, size)
    serve.run(build_graph(cfg), name=app, route_prefix="/")
    try:
        pids = _pids(app)
        src, digest = _source_file(size, work)
        rows = [transfer_once(base, src, digest, size, pids) for _ in range(rounds)]
        src.unlink()
    finally:
        serve.delete(app)
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"backend": backend, "rounds": rows, "pids": pids}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_database():
    """A throwaway PostgreSQL server (tests/pg_server.py) and the URL of a fresh database on it."""
    import sqlalchemy as sa

    from tests.pg_server import PostgresServer, find_bindir

    pg = PostgresServer(find_bindir())
    pg.start()
    admin = sa.create_engine(pg.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text('CREATE DATABASE "bench"'))
    admin.dispose()
    return pg, pg.url("bench")


def measure(args) -> dict:
    import ray
    from ray import serve

    import serve as serve_pkg
    from benchmarks.sysinfo import hardware, software
    from serve.data_plane import use_data_plane

    port = _free_port()
    data_plane = use_data_plane(args.data_plane)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    pg = None
    work = Path(tempfile.mkdtemp(prefix="ft-bench-"))
    results = []
    try:
        for backend in args.backends.split(","):
            url = None
            if backend == "postgresql":
                pg, url = _postgres_database()
            results.append(run_backend(f"http://127.0.0.1:{port}", backend, args.size_mib * MiB, args.rounds,
                                       work, url))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"label": args.label, "data_plane": data_plane, "size_mib": args.size_mib,
            "serve_from": str(Path(serve_pkg.__file__).parent),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "hardware": hardware(),
            "software": software(), "load_average": os.getloadavg(), "command": " ".join(sys.argv),
            "results": results}


def _best(rows: list[dict], key: str) -> float:
    return min(r[key] for r in rows)


def _peak(rows: list[dict], transfer: str, proc: str) -> str:
    """The highest peak over the rounds, and the most one transfer added to the RSS it started from."""
    peak = max(r[f"{transfer}_peak_mib"][proc] for r in rows)
    grew = max(r[f"{transfer}_peak_mib"][proc] - r["rss_before_mib"][proc] for r in rows)
    return f"{peak:.0f} (+{grew:.0f})"


def report(runs: list[dict]) -> str:
    first = runs[0]
    hw = first["hardware"]
    lines = [f"# File transfer through the graph: {first['size_mib']} MiB up and down", "",
             f"Hardware: {hw['cpu_model']}, {hw['usable_cores']} cores, {hw['memory_gib']} GiB, GPUs: "
             f"{', '.join(hw['gpus']) or 'none'}. Ray {first['software']['packages'].get('ray')}, Python "
             f"{first['software']['python']}.", ""]
    for run in runs:
        git = run["software"]["git"]
        lines.append(f"- **{run['label']}**: {run['date']}, `serve` from {run['serve_from']} (commit of the bench "
                     f"checkout {git['commit'][:12]}{' dirty' if git['dirty'] else ''}), load average after "
                     f"{', '.join(f'{x:.1f}' for x in run['load_average'])}. Command: `{run['command']}`")
    lines += ["", "MiB/s: the best of the rounds (the box is shared and noisy). Peak RSS: the process's VmHWM after a "
              "reset to its RSS just before the transfer ('idle'), the highest over the rounds; in brackets, the most "
              "one transfer added to the RSS it started from.", "",
              "| code | backend | upload MiB/s | download MiB/s | process | idle RSS MiB | peak RSS upload MiB | "
              "peak RSS download MiB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        size = run["size_mib"]
        for res in run["results"]:
            rows = res["rounds"]
            up, down = size / _best(rows, "upload_s"), size / _best(rows, "download_s")
            for i, proc in enumerate(PROCESSES):
                idle = min(r["rss_before_mib"][proc] for r in rows)
                head = (f"| {run['label']} | {res['backend']} | {up:.1f} | {down:.1f} |" if i == 0 else
                        "| | | | |")
                lines.append(f"{head} {proc} | {idle:.0f} | {_peak(rows, 'upload', proc)} | "
                             f"{_peak(rows, 'download', proc)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backends", default="local,sqlite,postgresql")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--data-plane", choices=["haproxy", "serve_proxy"], default="haproxy",
                    help="Serve's HTTP entry (serve/data_plane.py)")
    ap.add_argument("--json", type=Path, help="write the measurements here")
    ap.add_argument("--report", nargs="+", type=Path, help="only print a report of these JSON files")
    ap.add_argument("--out", type=Path, help="write the markdown report here")
    args = ap.parse_args()
    runs = [json.loads(p.read_text()) for p in args.report] if args.report else [measure(args)]
    if args.json and not args.report:
        args.json.write_text(json.dumps(runs[0], indent=1))
    text = report(runs)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
