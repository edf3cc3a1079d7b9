"""Multi-node rehearsal of the GPU cluster path, on one machine: run by tests/test_multinode.py in its own process
(its own Ray cluster; the session Ray of the other graph tests is untouched).

A head node (CPU only, custom resource `head_node`, as in cluster.yaml) and two worker nodes that declare one GPU
each and the `accelerator_type:L4` resource. The config asks for a GPU of that type for each LLM replica and pins
the ingress to the head; it is deployed the way a cluster is: `stackserve serve-config` -> `serve deploy` through
the dashboard. The nodes' GPUs are fake, so the engine (device: cuda) must fall back to the CPU.

    python tests/multinode_rehearsal.py TINY_MODEL_DIR MODEL_CACHE_DIR WORK_DIR   # prints one JSON line
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


def main(tiny_model_dir: str, model_cache_dir: str, work_dir: str) -> dict:
    import httpx
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from serve.config import parse_config
    from serve.deploy_config import deployment_name, serve_deploy_config

    dashboard_port, http_port = _free_port(), _free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"head_node": 100}, "include_dashboard": True,
        "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, num_gpus=1, resources={f"accelerator_type:{GPU_TYPE}": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING",
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})

        # Deploy as on a cluster: the Serve deploy config that `stackserve serve-config` writes, via `serve deploy`.
        cfg = parse_config(rehearsal_config(tiny_model_dir, model_cache_dir, http_port))
        serve_file = Path(work_dir) / "serve.yaml"
        serve_file.write_text(yaml.safe_dump(serve_deploy_config(cfg, app_name=APP), sort_keys=False))
        serve_cli = Path(sys.executable).parent / "serve"
        subprocess.run([str(serve_cli), "deploy", str(serve_file), "-a", f"http://127.0.0.1:{dashboard_port}"],
                       check=True, timeout=120, capture_output=True)
        _wait_running(serve)

        base = f"http://127.0.0.1:{http_port}/v1"
        replies = []
        for i in range(6):
            r = httpx.post(f"{base}/chat/completions", timeout=60, json={
                "model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": f"Hello {i}"}]})
            replies.append({"status": r.status_code, "finish_reason": (r.json().get("choices") or [{}])[0]
                            .get("finish_reason")})
        info = serve.get_deployment_handle(deployment_name(MODEL), app_name=APP).model_info.remote().result()

        nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
        actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        placed: dict[str, list[str]] = {}
        for a in actors:
            placed.setdefault(a.class_name, []).append(a.node_id)
        return {
            "head_node_id": cluster.head_node.node_id,
            "gpu_node_ids": sorted(n for n, res in nodes.items() if res.get("GPU", 0) >= 1),
            "nodes": {n: {k: v for k, v in res.items() if not k.startswith("node:")} for n, res in nodes.items()},
            "llm_replica_nodes": sorted(placed.get(f"ServeReplica:{APP}:{deployment_name(MODEL)}", [])),
            "ingress_replica_nodes": placed.get(f"ServeReplica:{APP}:Ingress", []),
            "replies": replies,
            "model_info": info,
            "cpu_fallback_logged": _logged(cluster, "CUDA is not available here: running on the CPU"),
        }
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


def _logged(cluster, needle: str) -> bool:
    """Whether a process of this cluster logged `needle` (replicas log into the session's log files)."""
    logs = Path(cluster.head_node.get_session_dir_path()) / "logs"
    return any(needle in p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])), flush=True)
