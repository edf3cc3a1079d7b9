"""cluster.yaml is a valid `ray up` file (Ray's own cluster-config JSON schema, shipped inside the ray package) and
fits configs/gpu-cluster.yaml: every deployment has exactly one node type to run on, with room for its replicas,
and finds its model files there."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from serve.config import load_config
from serve.deploy_config import deployment_name, deployment_options

ROOT = Path(__file__).resolve().parents[1]
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_valid_against_rays_cluster_schema(cluster):
    jsonschema.validate(cluster, json.loads(RAY_SCHEMA.read_text()))
    types = cluster["available_node_types"]
    assert cluster["head_node_type"] in types
    workers = [t for name, t in types.items() if name != cluster["head_node_type"]]
    assert workers and all(0 <= t["min_workers"] <= t["max_workers"] for t in workers)
    assert sum(t["min_workers"] for t in workers) <= cluster["max_workers"]
    assert all(t["resources"].get("GPU", 0) >= 1 for t in workers)  # GPU workers behind a CPU head
    assert "GPU" not in types[cluster["head_node_type"]]["resources"]


def test_schema_rejects_a_broken_file(cluster):
    """The schema check above can fail: a typo'd key is refused."""
    broken = {**cluster, "available_node_types": {**cluster["available_node_types"],
                                                  "x": {"resources": {}, "node_config": {}, "min_worker": 1}}}
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        jsonschema.validate(broken, json.loads(RAY_SCHEMA.read_text()))


def test_image_matches_pinned_ray_and_python(cluster):
    image = cluster["docker"]["image"]
    m = re.fullmatch(r"rayproject/ray-llm:(?P<ray>[\d.]+)-py(?P<py>\d+)-cu\d+", image)
    assert m, image
    assert m["ray"] == ray.__version__  # a cluster's Ray must equal the client's
    assert re.search(rf'"ray\[[a-z,]+\]=={re.escape(ray.__version__)}"', (ROOT / "pyproject.toml").read_text())
    assert m["py"] == f"{sys.version_info.major}{sys.version_info.minor}"


def test_every_node_installs_this_checkout(cluster):
    remote = next(dst for dst, src in cluster["file_mounts"].items() if src == ".")
    install = f'pip install -q -e "{remote}[gpu]"'
    assert install in cluster["setup_commands"]
    for name, t in cluster["available_node_types"].items():
        if "worker_setup_commands" in t:  # replaces setup_commands on that node type
            assert install in t["worker_setup_commands"], name


def _setup_commands(cluster: dict, node_type: str) -> list[str]:
    t = cluster["available_node_types"][node_type]
    if node_type == cluster["head_node_type"]:
        return cluster["setup_commands"] + cluster.get("head_setup_commands", [])
    return t.get("worker_setup_commands", cluster["setup_commands"] + cluster.get("worker_setup_commands", []))


def _actor_demand(opts: dict) -> dict[str, float]:
    """The Ray resources one replica actor asks for, in Ray's names (CPU, GPU, custom; accelerator_type:X)."""
    demand = {"CPU": opts.get("num_cpus", 1), "GPU": opts.get("num_gpus", 0), **opts.get("resources", {})}
    if opts.get("accelerator_type"):
        demand[f"accelerator_type:{opts['accelerator_type']}"] = 0.001  # what Ray asks for accelerator_type
    return {k: v for k, v in demand.items() if v}


def _replica_demand(opts: dict) -> dict[str, float]:
    """What one replica needs on one node: its placement group (STRICT_PACK) or its actor's resources."""
    bundles = opts.get("placement_group_bundles")
    if not bundles:
        return _actor_demand(opts["ray_actor_options"])
    assert opts["placement_group_strategy"] == "STRICT_PACK"
    total: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            total[k] = total.get(k, 0) + v
    return total


def _fits(demand: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(k, 0) >= v for k, v in demand.items())


@pytest.fixture(scope="module")
def placement(cluster) -> dict[str, tuple[str, dict, dict]]:
    """deployment name -> (the one node type it fits, its options, one replica's demand)."""
    cfg = load_config(ROOT / "configs" / "gpu-cluster.yaml")
    out = {}
    for name, opts in deployment_options(cfg).items():
        demand = _replica_demand(opts)
        fits = [t for t, spec in cluster["available_node_types"].items() if _fits(demand, spec["resources"])]
        assert len(fits) == 1, f"{name} ({demand}) fits node types {fits}: pin it to one"
        out[name] = (fits[0], opts, demand)
    return out


def test_each_deployment_has_one_node_type_with_room(cluster, placement):
    where = {name: t for name, (t, _, _) in placement.items()}
    head = cluster["head_node_type"]
    assert {where[n] for n in ("Ingress", "VectorIO", "Safety", "Agents")} == {head}  # next to the data
    llm_types = {where[n] for n in where if n.startswith("LLM:")}
    assert head not in llm_types and len(llm_types) >= 2
    # At full scale, the replicas on each node type fit its nodes (head: one node; workers: max_workers).
    for node_type, spec in cluster["available_node_types"].items():
        nodes = 1 if node_type == head else spec["max_workers"]
        used: dict[str, float] = {}
        for t, opts, demand in placement.values():
            if t == node_type:
                for k, v in demand.items():
                    used[k] = used.get(k, 0) + v * opts["autoscaling_config"]["max_replicas"]
        for k, v in used.items():
            assert v <= spec["resources"][k] * nodes + 1e-9, (node_type, k, v)


def test_models_are_downloaded_where_they_run(cluster, placement):
    cfg = load_config(ROOT / "configs" / "gpu-cluster.yaml")
    needs: dict[str, set[str]] = {}
    for m in cfg.models:
        needs.setdefault(placement[deployment_name(m.model_id)][0], set()).add(m.source)
    for e in cfg.embedding_models:
        emb_type = placement[deployment_name(e.model_id, "Embeddings")][0]
        needs.setdefault(emb_type, set()).add(e.source)
        needs.setdefault(placement["VectorIO"][0], set()).add(e.source)  # its chunker loads the tokenizer
    for s in cfg.safety.shields:
        if s.provider_id == "prompt-guard":
            needs.setdefault(placement["Safety"][0], set()).add(s.provider_shield_id)
    for node_type, sources in needs.items():
        commands = " ".join(_setup_commands(cluster, node_type))
        for source in sources:
            assert f"--local-dir {source}" in commands, (node_type, source)
