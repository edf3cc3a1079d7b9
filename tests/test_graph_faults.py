"""Fault tolerance through the running graph: one of two LLM replicas is killed while streams are in flight.

Its own Serve application (tiny random model, 2 replicas of at most STREAMS_PER_REPLICA ongoing requests each, so
Serve places exactly that many streams on each replica). Every stream must end one of two clean ways: complete
(a finish_reason, then `[DONE]`), or fail with an OpenAI error the SDK raises (an SSE error event mid-stream, or an
HTTP error before the first byte). A hang or a stream cut short without an error fails the test. Once Serve has
replaced the replica, every request succeeds again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import openai
import pytest
from openai import AsyncOpenAI

from serve.graph import deployment_name

pytestmark = pytest.mark.graph

APP = "faults"
MODEL = "tiny-faults"
STREAMS_PER_REPLICA = 3
STREAMS = 2 * STREAMS_PER_REPLICA
STREAM_TOKENS = 900  # long enough that every stream is mid-way when the replica dies
STREAM_TIMEOUT_S = 120  # a stream still open after this is a hang (the failure bound, not a speed expectation)
RECOVERY_S = 180


@pytest.fixture(scope="module")
def faults_url(ray_serve, model_cache_dir, tiny_model_dir):
    from ray import serve

    from serve.config import parse_config
    from serve.graph import build_graph

    cfg = parse_config({
        "model_cache_dir": str(model_cache_dir),
        "ingress": {"max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 0.05}},
        "models": [{
            "model_id": MODEL, "source": str(tiny_model_dir),
            "engine": {"max_num_seqs": STREAMS_PER_REPLICA, "max_model_len": 1024, "kv_cache_tokens": 4096},
            "deployment": {"num_replicas": 2, "max_ongoing_requests": STREAMS_PER_REPLICA,
                           "ray_actor_options": {"num_cpus": 0.05}},
        }],
    })
    serve.run(build_graph(cfg), name=APP, route_prefix=f"/{APP}")
    yield f"{ray_serve}/{APP}"
    serve.delete(APP)


def _replica_states() -> dict[str, int]:
    from ray import serve

    states = serve.status().applications[APP].deployments[deployment_name(MODEL)].replica_states
    return {str(k): v for k, v in states.items()}


def _replica_actor_names() -> list[dict]:
    import ray

    tag = f"{APP}#{deployment_name(MODEL)}#"
    return [a for a in ray.util.list_named_actors(all_namespaces=True) if tag in a["name"]]


async def _one_stream(client: AsyncOpenAI, started: asyncio.Event) -> str:
    """How one stream ended: "completed", "error_event:<code>" (OpenAI error event mid-stream), "http_error:<status>:
    <code>" (an error status before the stream began) or "truncated" (neither a finish_reason nor an error)."""
    finish = None
    try:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Count to a thousand."}], stream=True,
            max_tokens=STREAM_TOKENS, temperature=1.0, extra_body={"ignore_eos": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                started.set()
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
    except openai.APIStatusError as e:
        return f"http_error:{e.status_code}:{e.code}"
    except openai.APIError as e:  # an `error` event in the SSE stream: raised by the SDK, no status code
        return f"error_event:{e.code}"
    return "completed" if finish == "length" else "truncated"


async def _streams_with_a_kill(url: str) -> tuple[Counter, str]:
    import ray

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=STREAM_TIMEOUT_S)
    started = [asyncio.Event() for _ in range(STREAMS)]
    tasks = [asyncio.create_task(_one_stream(client, ev)) for ev in started]
    await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in started)), STREAM_TIMEOUT_S)
    victim = _replica_actor_names()[0]
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    done, pending = await asyncio.wait(tasks, timeout=STREAM_TIMEOUT_S)
    for t in pending:
        t.cancel()
    outcomes = Counter(t.result() for t in done)
    outcomes["hung"] = len(pending)
    return outcomes, victim["name"]


async def _all_succeed(url: str, n: int) -> list[str]:
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=STREAM_TIMEOUT_S)

    async def one(i: int) -> str:
        r = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Hi {i}"}],
                                                 max_tokens=8, extra_body={"ignore_eos": True})
        return r.choices[0].finish_reason

    return await asyncio.gather(*(one(i) for i in range(n)))


def test_killed_replica_fails_its_streams_cleanly_and_is_replaced(faults_url):
    assert _replica_states() == {"RUNNING": 2}
    before = {a["name"] for a in _replica_actor_names()}
    assert len(before) == 2

    outcomes, victim = asyncio.run(_streams_with_a_kill(faults_url))
    print(f"streams after killing {victim}: {dict(outcomes)}")
    assert outcomes["hung"] == 0 and outcomes["truncated"] == 0, outcomes
    assert outcomes["completed"] == STREAMS_PER_REPLICA, outcomes  # the surviving replica's streams
    # the killed replica's streams: an OpenAI error saying the replica is gone (503 before the first byte)
    failed = {k: v for k, v in outcomes.items() if k.startswith(("error_event", "http_error"))}
    assert sum(failed.values()) == STREAMS_PER_REPLICA, outcomes
    assert set(failed) <= {"error_event:unavailable", "http_error:503:unavailable"}, outcomes

    # Serve's status and Ray's named-actor list catch up separately: wait until both show two replicas, the victim
    # gone (a full run once saw RUNNING: 2 while the list still lacked the new replica's name)
    deadline = time.monotonic() + RECOVERY_S
    names = before
    while not (_replica_states() == {"RUNNING": 2} and len(names) == 2 and victim not in names):
        assert time.monotonic() < deadline, f"replica not replaced: {_replica_states()}, {names}"
        time.sleep(0.5)
        names = {a["name"] for a in _replica_actor_names()}
    assert len(names - before) == 1  # a new replica, the other untouched
    assert asyncio.run(_all_succeed(faults_url, 4 * STREAMS_PER_REPLICA)) == ["length"] * 4 * STREAMS_PER_REPLICA
