"""Multi-node rehearsal of the GPU cluster path, on one machine: run by tests/test_multinode.py in its own process
(its own Ray cluster; the session Ray of the other graph tests is untouched).

A head node (CPU only, custom resource `head_node`, as in cluster.yaml) and two worker nodes that declare one GPU
each and the `accelerator_type:L4` resource. The config asks for a GPU of that type for each LLM replica and pins
the ingress to the head; it is deployed the way a cluster is: `stackserve serve-config` -> `serve deploy` through
the dashboard. The nodes' GPUs are fake, so the engine (device: cuda) must fall back to the CPU.

Given a PostgreSQL URL, state spans the nodes as on a GPU cluster: SQL state and file bytes in that database
(`blob_url: sql`), each node with its own data directory (STACKSERVE_DATA_DIR), VectorIO pinned to one worker and
Batches to the other. A file uploaded through the ingress (head) is attached and searched on the first worker and
downloaded back through the ingress; a batch file runs on the second worker and its output is downloaded too.

    python tests/multinode_rehearsal.py TINY_MODEL_DIR MODEL_CACHE_DIR WORK_DIR [DATABASE_URL]  # one JSON line
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

APP = "rehearsal"
MODEL = "tiny-on-gpu-nodes"
GPU_TYPE = "L4"
DEADLINE_S = 180
EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
WORKERS = ("worker_a", "worker_b")  # a custom resource naming each worker node: VectorIO on a, Batches on b
DOCUMENT = "Axolotls (ajolotes, Xochimilco) regrow lost limbs — even parts of their heart and brain.".encode()
BINARY = bytes(range(256)) * 6000  # ~1.5 MiB, two SQL chunk rows and a part: no text codec keeps these bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rehearsal_config(tiny_model_dir: str, model_cache_dir: str, port: int) -> dict:
    return {
        "model_cache_dir": model_cache_dir,
        "server": {"host": "127.0.0.1", "port": port},
        "ingress": {"max_ongoing_requests": 32, "ray_actor_options": {"num_cpus": 0.1, "resources": {"head_node": 1}}},
        "models": [{
            "model_id": MODEL, "source": tiny_model_dir,
            "engine": {"device": "cuda", "dtype": "bfloat16", "max_num_seqs": 2, "max_model_len": 512,
                       "kv_cache_tokens": 2048, "num_threads": 1},
            "deployment": {"num_replicas": 2,
                           "ray_actor_options": {"num_cpus": 0.1, "num_gpus": 1, "accelerator_type": GPU_TYPE}},
        }],
    }


def stateful_config(database_url: str) -> dict:
    """What the rehearsal adds with PostgreSQL: state and blobs in it, VectorIO and Batches on different workers."""
    def on(resource: str | None) -> dict:
        return {"ray_actor_options": {"num_cpus": 0.05, **({"resources": {resource: 1}} if resource else {})}}

    return {
        "storage": {"url": database_url, "blob_url": "sql"},
        "embedding_models": [{"model_id": EMBEDDER, "source": EMBEDDER, "deployment": on(None)}],
        "vector_io": {"deployment": on(WORKERS[0])},
        "batches": {"lines_per_batch": 1, "deployment": on(WORKERS[1])},
    }


def _wait_running(serve) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP)
        if app is not None and app.status == "RUNNING":  # a str enum
            return
        if app is not None and app.status == "DEPLOY_FAILED":
            raise RuntimeError(f"deploy failed: {app.message}")
        time.sleep(0.5)
    raise TimeoutError(f"application not RUNNING after {DEADLINE_S}s: {serve.status()}")


def main(tiny_model_dir: str, model_cache_dir: str, work_dir: str, database_url: str | None = None) -> dict:
    import httpx
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from serve.config import parse_config
    from serve.data_plane import use_data_plane
    from serve.deploy_config import deployment_name, serve_deploy_config

    dashboard_port, http_port = _free_port(), _free_port()
    def data_dir(node: str) -> dict:  # each node its own data directory: nothing may pass through local disk
        return {"env_vars": {"STACKSERVE_DATA_DIR": str(Path(work_dir) / f"data-{node}")}}

    use_data_plane("haproxy")  # every node's Ray starts with it, as cluster.yaml's `ray start`s do
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"head_node": 100}, "include_dashboard": True,
        "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port, **data_dir("head")})
    try:
        def add_worker(worker: str, data: str):
            return cluster.add_node(num_cpus=1, num_gpus=1, resources={f"accelerator_type:{GPU_TYPE}": 1, worker: 10},
                                    **data_dir(data))

        worker_nodes = {worker: add_worker(worker, worker) for worker in WORKERS}
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING",
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})

        # Deploy as on a cluster: the Serve deploy config that `stackserve serve-config` writes, via `serve deploy`.
        raw = rehearsal_config(tiny_model_dir, model_cache_dir, http_port)
        cfg = parse_config(raw | stateful_config(database_url) if database_url else raw)
        serve_file = Path(work_dir) / "serve.yaml"
        serve_file.write_text(yaml.safe_dump(serve_deploy_config(cfg, app_name=APP), sort_keys=False))
        serve_cli = Path(sys.executable).parent / "serve"
        deploy = subprocess.run([str(serve_cli), "deploy", str(serve_file), "-a",
                                 f"http://127.0.0.1:{dashboard_port}"], timeout=120, capture_output=True, text=True)
        if deploy.returncode:
            raise RuntimeError(f"serve deploy failed: {deploy.stderr[-3000:]}")
        _wait_running(serve)

        base = f"http://127.0.0.1:{http_port}/v1"
        replies = []
        for i in range(6):
            r = httpx.post(f"{base}/chat/completions", timeout=60, json={
                "model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": f"Hello {i}"}]})
            replies.append({"status": r.status_code, "finish_reason": (r.json().get("choices") or [{}])[0]
                            .get("finish_reason")})
        info = serve.get_deployment_handle(deployment_name(MODEL), app_name=APP).model_info.remote().result()
        started = time.monotonic()
        state = stateful_round_trip(base) if database_url else {}
        state_s = round(time.monotonic() - started, 1)
        placed_before = _placement()
        if database_url:  # worker a, which ingested the upload, dies; a replacement node (its own, empty disk) joins
            cluster.remove_node(worker_nodes[WORKERS[0]])
            replacement = add_worker(WORKERS[0], f"{WORKERS[0]}-replacement")
            state["after_node_loss"] = after_node_loss(base, state["upload"], replacement.node_id)

        placed, nodes = placed_before
        return {
            "head_node_id": cluster.head_node.node_id,
            "gpu_node_ids": sorted(n for n, res in nodes.items() if res.get("GPU", 0) >= 1),
            "nodes": {n: {k: v for k, v in res.items() if not k.startswith("node:")} for n, res in nodes.items()},
            "llm_replica_nodes": sorted(placed.get(f"ServeReplica:{APP}:{deployment_name(MODEL)}", [])),
            "ingress_replica_nodes": placed.get(f"ServeReplica:{APP}:Ingress", []),
            "replies": replies,
            "model_info": info,
            "cpu_fallback_logged": _logged(cluster, "CUDA is not available here: running on the CPU"),
            "worker_node_ids": {w: next(n for n, res in nodes.items() if w in res) for w in WORKERS},
            "vector_io_replica_nodes": placed.get(f"ServeReplica:{APP}:VectorIO", []),
            "batches_replica_nodes": placed.get(f"ServeReplica:{APP}:Batches", []),
            "state": state,
            "state_s": state_s,  # how long the stateful round trip took (the rehearsal's CI budget)
        }
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


def _placement() -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Each alive actor class's nodes, and each alive node's resources."""
    import ray
    from ray.util.state import list_actors

    placed: dict[str, list[str]] = {}
    for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
        placed.setdefault(a.class_name, []).append(a.node_id)
    return placed, {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}


def after_node_loss(base: str, upload: dict, new_node_id: str) -> dict:
    """Once Serve has replaced the VectorIO replica that died with worker a: the uploaded file still downloads
    identical, the store still finds it, and a new upload is attached on the replacement node."""
    import hashlib

    import httpx

    deadline = time.monotonic() + DEADLINE_S
    replaced = False
    while time.monotonic() < deadline and not replaced:
        time.sleep(1)
        replaced = new_node_id in _placement()[0].get(f"ServeReplica:{APP}:VectorIO", [])
    with httpx.Client(base_url=base, timeout=120) as http:
        content = http.get(f"/files/{upload['file_id']}/content").content
        store = upload["store_id"]
        hits = http.post(f"/vector_stores/{store}/search", json={"query": "Which animal regrows its limbs?"})
        f = http.post("/files", files={"file": ("again.txt", DOCUMENT)}, data={"purpose": "assistants"}).json()
        attached = http.post(f"/vector_stores/{store}/files", json={"file_id": f["id"]}).json()
        while attached["status"] == "in_progress" and time.monotonic() < deadline:
            time.sleep(0.3)
            attached = http.get(f"/vector_stores/{store}/files/{f['id']}").json()
    return {"replaced": replaced, "vector_io_replica_nodes": _placement()[0].get(f"ServeReplica:{APP}:VectorIO"),
            "downloaded_identical": hashlib.sha256(content).digest() == hashlib.sha256(DOCUMENT).digest(),
            "search_status": hits.status_code,
            "search_file_ids": [d["file_id"] for d in hits.json().get("data", [])] if hits.is_success else [],
            "new_attach_status": attached["status"], "new_attach_error": attached.get("last_error")}


def stateful_round_trip(base: str) -> dict:
    """Upload -> attach (VectorIO, worker a) -> search -> download; a batch (Batches, worker b) -> its output."""
    import hashlib

    import httpx

    out: dict = {}
    with httpx.Client(base_url=base, timeout=120) as http:
        f = http.post("/files", files={"file": ("axolotl.txt", DOCUMENT)}, data={"purpose": "assistants"}).json()
        store = http.post("/vector_stores", json={"name": "rehearsal"}).json()
        attached = http.post(f"/vector_stores/{store['id']}/files", json={"file_id": f["id"]}).json()
        deadline = time.monotonic() + 60
        while attached["status"] == "in_progress" and time.monotonic() < deadline:
            time.sleep(0.3)
            attached = http.get(f"/vector_stores/{store['id']}/files/{f['id']}").json()
        hits = http.post(f"/vector_stores/{store['id']}/search", json={"query": "Which animal regrows its limbs?"})
        blob = http.post("/files", files={"file": ("bytes.bin", BINARY)}, data={"purpose": "user_data"}).json()
        same = {name: hashlib.sha256(http.get(f"/files/{fid}/content").content).digest() == hashlib.sha256(data)
                .digest() for name, fid, data in (("text", f["id"], DOCUMENT), ("binary", blob["id"], BINARY))}
        out["upload"] = {"bytes": blob["bytes"], "attach_status": attached["status"],
                         "attach_error": attached.get("last_error"), "downloaded_identical": same,
                         "search_file_ids": [d["file_id"] for d in hits.json()["data"]], "file_id": f["id"],
                         "store_id": store["id"]}
        line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}}
        batch_in = http.post("/files", files={"file": ("in.jsonl", json.dumps(line).encode() + b"\n")},
                             data={"purpose": "batch"}).json()
        batch = http.post("/batches", json={"input_file_id": batch_in["id"], "endpoint": "/v1/chat/completions",
                                            "completion_window": "24h"}).json()
        deadline = time.monotonic() + 90
        while batch["status"] not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.5)
            batch = http.get(f"/batches/{batch['id']}").json()
        output = http.get(f"/files/{batch['output_file_id']}/content").text if batch.get("output_file_id") else ""
        out["batch"] = {"status": batch["status"], "errors": batch.get("errors"),
                        "output": [json.loads(x) for x in output.splitlines()]}
    return out


def _logged(cluster, needle: str) -> bool:
    """Whether a process of this cluster logged `needle` (replicas log into the session's log files)."""
    logs = Path(cluster.head_node.get_session_dir_path()) / "logs"
    return any(needle in p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])), flush=True)
