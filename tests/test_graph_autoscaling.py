"""Autoscaling per deployment through the running graph: a burst of concurrent chat requests scales the LLM
deployment from 1 to 2 replicas, and it scales back to 1 once the load stops, with no failed request.

Its own Serve application (tiny random model, short delays) in the session's Ray, observed with serve.status()."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai import OpenAI

from serve.graph import deployment_name

pytestmark = pytest.mark.graph

APP = "autoscaling"
MODEL = "tiny-autoscaled"
CLIENTS = 8  # concurrent clients in the burst: 4x the target of 2 ongoing requests per replica
DEADLINE_S = 120  # failure bound for each phase, not a speed expectation


@pytest.fixture(scope="module")
def scaling_url(ray_serve, model_cache_dir, tiny_model_dir):
    from ray import serve

    from serve.config import parse_config
    from serve.graph import build_graph

    cfg = parse_config({
        "model_cache_dir": str(model_cache_dir),
        "ingress": {"max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 0.05}},
        "models": [{
            "model_id": MODEL, "source": str(tiny_model_dir),
            # max_num_seqs 2: the LLM default target_ongoing_requests is one full batch, 2 per replica
            "engine": {"max_num_seqs": 2, "max_model_len": 512, "kv_cache_tokens": 4096, "max_queued_requests": 32},
            "deployment": {"max_ongoing_requests": 16, "ray_actor_options": {"num_cpus": 0.05},
                           "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "upscale_delay_s": 1,
                                                  "downscale_delay_s": 3, "look_back_period_s": 2,
                                                  "metrics_interval_s": 0.5}},
        }],
    })
    serve.run(build_graph(cfg), name=APP, route_prefix=f"/{APP}")
    yield f"{ray_serve}/{APP}"
    serve.delete(APP)


def _replicas() -> dict[str, int]:
    from ray import serve

    app = serve.status().applications[APP]
    return {str(k): v for k, v in app.deployments[deployment_name(MODEL)].replica_states.items()}


def _wait_for(pred, what: str) -> dict[str, int]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        states = _replicas()
        if pred(states):
            return states
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; replica states {_replicas()}")


def test_llm_scales_up_under_burst_and_back_down(scaling_url):
    client = OpenAI(base_url=f"{scaling_url}/v1", api_key="none", max_retries=0, timeout=60)
    assert _wait_for(lambda s: s.get("RUNNING") == 1, "the first replica") == {"RUNNING": 1}

    stop = threading.Event()
    done: list[str] = []
    failures: list[Exception] = []

    def client_loop() -> None:
        while not stop.is_set():
            try:
                r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi!"}],
                                                   max_tokens=24, temperature=1.0)
                done.append(r.choices[0].finish_reason)
            except Exception as e:  # every failure is reported below
                failures.append(e)
                return

    with ThreadPoolExecutor(CLIENTS) as pool:
        for _ in range(CLIENTS):
            pool.submit(client_loop)
        try:
            _wait_for(lambda s: s.get("RUNNING", 0) >= 2 or failures, "a second replica under load")
            served_at_scale_up = len(done)
            # keep the burst going a while at 2 replicas: requests now spread over both
            _wait_for(lambda s: len(done) >= served_at_scale_up + 4 * CLIENTS or failures, "requests at 2 replicas")
        finally:
            stop.set()
    assert not failures, failures[:3]
    assert done and set(done) <= {"stop", "length"}

    assert _wait_for(lambda s: s == {"RUNNING": 1}, "scale-down to one replica") == {"RUNNING": 1}
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Still there?"}],
                                       max_tokens=8)
    assert r.choices[0].message.content is not None
