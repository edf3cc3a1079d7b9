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
    gpu_workers = [t for t in workers if t["resources"].get("GPU", 0) >= 1]  # GPU workers behind a CPU head,
    assert len(gpu_workers) >= 2 and len(workers) - len(gpu_workers) == 1  # plus one CPU type for the state-heavy
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
    install = f'pip install -q -c {remote}/constraints-cluster.txt -e "{remote}[gpu,postgres]"'
    assert install in cluster["setup_commands"]
    for name, t in cluster["available_node_types"].items():
        if "worker_setup_commands" in t:  # replaces setup_commands on that node type
            assert install in t["worker_setup_commands"], name


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_cluster_installs_pin_the_images_own_versions(cluster):
    """constraints-cluster.txt pins ray to the image tag's version, vllm to what that Ray's `llm` extra requires
    (the Ray LLM image installs ray[llm]), and torch exactly; a new image tag without new pins fails here."""
    from importlib.metadata import requires

    pins = _pins(ROOT / "constraints-cluster.txt")
    tag = re.fullmatch(r"rayproject/ray-llm:(?P<ray>[\d.]+)-py\d+-cu\d+", cluster["docker"]["image"])
    assert pins["ray"] == tag["ray"] == ray.__version__
    llm_vllm = [r for r in requires("ray") if r.startswith("vllm") and 'extra == "llm"' in r]
    assert llm_vllm and f"=={pins['vllm']};" in llm_vllm[0].replace(" ", ""), llm_vllm
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["torch"])
    assert pins["psycopg"] == _pins(ROOT / "constraints.txt")["psycopg"]  # the driver the storage suite runs


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
    assert where["Ingress"] == head  # beside Serve's one HTTP proxy (proxy_location: HeadOnly)
    # state is in PostgreSQL: the stateful deployments run on (several) worker nodes, none pinned to the head
    stateful = {where[n] for n in ("VectorIO", "Safety", "Agents", "DatasetIO", "Batches")}
    assert len(stateful) == 1 and head not in stateful
    assert "GPU" not in cluster["available_node_types"][stateful.pop()]["resources"]
    for n in ("VectorIO", "Agents", "DatasetIO", "Batches"):
        assert placement[n][1]["autoscaling_config"]["min_replicas"] >= 2, n
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


def test_every_node_starts_ray_with_the_shared_storage_settings(cluster):
    """STACKSERVE_DATABASE_URL (and STACKSERVE_BLOB_URL) reach every replica: the env file is mounted on every node
    and sourced by both `ray start`s, and the GPU configs name no node-local storage."""
    env_file = next(dst for dst, src in cluster["file_mounts"].items() if src.endswith("cluster.env"))
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in cluster[key] if "ray start" in c)
        assert start.startswith(f"set -a && . {env_file} && set +a"), start
    for name in ("gpu-cluster.yaml", "gpu-node.yaml"):
        cfg = load_config(ROOT / "configs" / name)
        assert cfg.storage.url is None  # from STACKSERVE_DATABASE_URL: no credentials in the file
        assert cfg.storage.blob_url == "sql" and cfg.server.limits_scope == "shared"
    assert "head_node" not in (ROOT / "configs" / "gpu-cluster.yaml").read_text().split("vector_io:", 1)[1]


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


def test_every_node_starts_ray_on_the_haproxy_data_plane(cluster):
    """Ray reads the data plane from its processes' environment (serve/data_plane.py): both `ray start`s set it, as
    the GPU configs' `server.data_plane` (the default, haproxy) says."""
    from serve.data_plane import HAPROXY_ENV

    exports = "export " + " ".join(f"{k}={v}" for k, v in HAPROXY_ENV.items()) + " &&"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in cluster[key] if "ray start" in c)
        assert exports in start.split("ray start", 1)[0], start
    for name in ("gpu-cluster.yaml", "gpu-node.yaml"):
        assert load_config(ROOT / "configs" / name).server.data_plane == "haproxy"
