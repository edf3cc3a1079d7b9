"""Graceful drain: redeploying an LLM deployment (new options, a new version) replaces its replica, and the old
replica stops only after the streams it serves have finished (graceful_shutdown_timeout_s: 120 s by default for
LLM deployments and the ingress, where Ray's generic 20 s would cut long generations; test_serve_options checks
the defaults). No client sees its stream cut. The test sets 300 s for three 160-token streams: on a loaded
2-core CI box three 400-token streams once outlasted 120 s, and what is under test here is the drain, not the
default's size."""

from __future__ import annotations

import threading

import pytest
from openai import OpenAI

from tests.conftest import SMOLLM2

pytestmark = pytest.mark.graph

TOKENS = 160
DRAIN_S = 300


def drain_config(model_cache_dir, num_cpus: float):
    from serve.config import parse_config

    return parse_config({
        "model_cache_dir": str(model_cache_dir),
        "ingress": {"ray_actor_options": {"num_cpus": 0.01}, "graceful_shutdown_timeout_s": DRAIN_S},
        "models": [{"model_id": SMOLLM2, "source": SMOLLM2,
                    "engine": {"max_num_seqs": 4, "max_model_len": 1024, "kv_cache_tokens": 4096},
                    "deployment": {"ray_actor_options": {"num_cpus": num_cpus},
                                   "graceful_shutdown_timeout_s": DRAIN_S}}],
    })


def test_redeploy_lets_running_streams_finish(ray_serve, model_cache_dir, smollm2_dir):
    from ray import serve

    from serve.graph import build_graph, deployment_name

    serve.run(build_graph(drain_config(model_cache_dir, 0.01)), name="drain", route_prefix="/drain")
    handle = serve.get_deployment_handle(deployment_name(SMOLLM2), app_name="drain")
    old_replica = handle.stats.remote().result()["replica"]
    client = OpenAI(base_url=f"{ray_serve}/drain/v1", api_key="none", max_retries=0, timeout=DRAIN_S)
    started = [threading.Event() for _ in range(3)]
    results: list = []

    def stream(i: int) -> None:
        try:
            s = client.chat.completions.create(
                model=SMOLLM2, messages=[{"role": "user", "content": f"Tell a long story, number {i}."}],
                max_tokens=TOKENS, stream=True, stream_options={"include_usage": True},
                extra_body={"ignore_eos": True})
            finish, usage = None, None
            for chunk in s:
                started[i].set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
                usage = chunk.usage or usage
            results.append((finish, usage.completion_tokens if usage else None))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            results.append(e)
        finally:
            started[i].set()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for e in started:
        assert e.wait(300)
    # a changed replica option: Serve starts new replicas (the ingress's config changed too) and stops the old ones,
    # which drain the streams first (with Ray's 20 s default the three streams were cut: APIConnectionError)
    assert all(t.is_alive() for t in threads) and not results  # the redeploy starts with every stream in flight
    serve.run(build_graph(drain_config(model_cache_dir, 0.02)), name="drain", route_prefix="/drain")
    assert handle.stats.remote().result()["replica"] != old_replica  # the new replica serves now
    for t in threads:
        t.join(DRAIN_S)
    assert results == [("length", TOKENS)] * 3, results
    serve.delete("drain")
