"""Multi-node rehearsal: a head and two fake-GPU worker nodes on this machine (ray.cluster_utils.Cluster), the
graph deployed with `serve deploy` from the Serve config we emit. LLM replicas land on the GPU nodes, the ingress on
the head, and the engine runs on the CPU since the GPUs are only declared. With PostgreSQL (state and file bytes in
it, each node its own data directory) VectorIO and Batches run on different workers and a file crosses the nodes.
Runs tests/multinode_rehearsal.py in a subprocess: it needs its own Ray cluster, and the session Ray of the other
graph tests must stay as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from serve.data_plane import PORT_SETTINGS

pytestmark = pytest.mark.graph

SCRIPT = Path(__file__).with_name("multinode_rehearsal.py")


@pytest.fixture(scope="module")
def rehearsal(request, tiny_model_dir, model_cache_dir, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("multinode")
    try:  # the stateful half needs PostgreSQL (skipped without it, as every PostgreSQL test is, unless CI is set)
        database = [request.getfixturevalue("postgres_databases").create()]
    except pytest.skip.Exception:
        database = []
    root = str(Path(__file__).resolve().parents[1])
    # RAY_TMPDIR: the cluster's sessions and its address file stay private, so no other process's ray.init()
    # can find this cluster (or a stale address of it).  A short path: Ray's unix sockets live under it.
    with tempfile.TemporaryDirectory(prefix="ssr-", dir="/tmp", ignore_cleanup_errors=True) as ray_tmp:
        # the session Ray's fixed-port listeners stay its own: the rehearsal picks free ports (serve/data_plane.py)
        env = {**{k: v for k, v in os.environ.items() if k not in PORT_SETTINGS}, "RAY_TMPDIR": ray_tmp,
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        args = [str(tiny_model_dir), str(model_cache_dir), str(work), *database]
        proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                              env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_llm_replicas_land_on_gpu_nodes(rehearsal):
    gpu_nodes = set(rehearsal["gpu_node_ids"])
    assert len(gpu_nodes) == 2 and rehearsal["head_node_id"] not in gpu_nodes
    assert all(rehearsal["nodes"][n].get("accelerator_type:L4") == 1 for n in gpu_nodes)
    llm = rehearsal["llm_replica_nodes"]
    assert len(llm) == 2 and set(llm) == gpu_nodes  # one whole (fake) GPU each: one replica per GPU node


def test_ingress_stays_on_the_head(rehearsal):
    assert rehearsal["ingress_replica_nodes"] == [rehearsal["head_node_id"]]


def test_requests_are_served_on_cpu_fallback(rehearsal):
    assert [r["status"] for r in rehearsal["replies"]] == [200] * len(rehearsal["replies"])
    assert all(r["finish_reason"] in ("stop", "length") for r in rehearsal["replies"])
    assert rehearsal["model_info"]["device"] == "cpu"  # asked for cuda; the nodes only declare GPUs
    assert rehearsal["cpu_fallback_logged"]


def _stateful(rehearsal) -> dict:
    if not rehearsal["state"]:
        pytest.skip("PostgreSQL is not available: the rehearsal ran without shared state")
    return rehearsal["state"]


def test_vector_io_and_batches_run_on_different_workers(rehearsal):
    _stateful(rehearsal)
    workers = rehearsal["worker_node_ids"]
    assert rehearsal["vector_io_replica_nodes"] == [workers["worker_a"]]
    assert rehearsal["batches_replica_nodes"] == [workers["worker_b"]]
    assert workers["worker_a"] != workers["worker_b"] and rehearsal["head_node_id"] not in workers.values()


def test_a_file_crosses_nodes_through_postgresql(rehearsal):
    """Uploaded through the ingress on the head, ingested and searched on worker a, downloaded through the head:
    the same bytes, with nothing shared on disk (each node its own data directory)."""
    up = _stateful(rehearsal)["upload"]
    assert up["attach_status"] == "completed", up["attach_error"]
    assert up["search_file_ids"] and up["search_file_ids"][0] == up["file_id"]
    assert up["downloaded_identical"] == {"text": True, "binary": True} and up["bytes"] > 1 << 20


def test_a_batch_on_the_other_worker_writes_its_output_to_the_shared_store(rehearsal):
    batch = _stateful(rehearsal)["batch"]
    assert batch["status"] == "completed", batch["errors"]
    assert [(r["custom_id"], r["response"]["status_code"]) for r in batch["output"]] == [("r1", 200)]


def test_losing_the_node_that_ingested_a_file_loses_nothing(rehearsal):
    """Worker a (VectorIO, which ingested the upload, and an LLM replica) is removed and a replacement node with an
    empty disk joins: Serve restarts VectorIO there, and the file, its chunks and new attaches all still work."""
    after = _stateful(rehearsal)["after_node_loss"]
    assert after["replaced"], after
    assert after["downloaded_identical"]
    assert after["search_status"] == 200 and after["search_file_ids"][:1] == [_stateful(rehearsal)["upload"]["file_id"]]
    assert after["new_attach_status"] == "completed", after["new_attach_error"]
