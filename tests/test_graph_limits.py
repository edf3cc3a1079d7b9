"""Limits across ingress replicas: with two ingress replicas and `limits_scope: shared`, a principal allowed R
requests a minute gets about R (one limiter actor counts for both replicas); with `replica`, each replica counts on
its own and the same burst gets through about twice. Embeddings-only graphs: no LLM to load."""

from __future__ import annotations

import concurrent.futures as cf

import httpx
import pytest

from tests.conftest import MINILM

pytestmark = pytest.mark.graph

R = 20  # requests per minute for the limited principal


def limits_config(scope: str, data_dir):
    from serve.config import parse_config

    light = {"ray_actor_options": {"num_cpus": 0.01}}
    return parse_config({
        "data_dir": str(data_dir),
        "server": {"limits_scope": scope,
                   "principals": [{"name": "metered", "api_keys": ["sk-metered"],
                                   "limits": {"requests_per_minute": R}}]},
        "ingress": {**light, "num_replicas": 2},
        "embedding_models": [{"model_id": MINILM, "source": MINILM, "deployment": light}],
    })


def burst(url: str, n: int) -> list[int]:
    """`n` requests from 8 clients at once; the status of each."""
    def one(_):
        return httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer sk-metered"}, timeout=60).status_code

    with cf.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("scope", ["shared", "replica"])
def test_two_ingress_replicas_share_one_limit(ray_serve, tmp_path, scope):
    import ray
    from ray import serve

    from serve.graph import build_graph
    from serve.shared_limits import ACTOR_PREFIX

    app = f"limits-{scope}"
    serve.run(build_graph(limits_config(scope, tmp_path)), name=app, route_prefix=f"/{app}")
    try:
        codes = burst(f"{ray_serve}/{app}", 3 * R)
        accepted = codes.count(200)
        assert set(codes) <= {200, 429}, codes
        if scope == "shared":
            assert abs(accepted - R) <= 0.1 * R, f"{accepted} of {3 * R} accepted; the limit is {R}"
        else:  # each replica admits its own R: the case `shared` exists for
            assert accepted > 1.3 * R, f"{accepted} of {3 * R} accepted with per-replica buckets"
    finally:
        serve.delete(app)
        if scope == "shared":  # the limiter actor is detached: it outlives the application
            found = [a for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"] == f"{ACTOR_PREFIX}-{app}"]
            assert len(found) == 1, found  # one actor served both replicas
            ray.kill(ray.get_actor(found[0]["name"], namespace=found[0]["namespace"]))
