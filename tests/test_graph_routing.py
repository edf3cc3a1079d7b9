"""Cache-aware routing through the running graph: two replicas of one LLM deployment (tiny random model) behind
the prefix-aware request router (the default with more than one replica).

Where requests went is read from each replica's own count of the chat calls it took (`stats()["requests"]`,
asked through the handle until both replicas answered): the turns of one conversation (`prompt_cache_key`), one
`x-session-id` and one Responses chain land on one replica, and reuse its prefix cache (`cached_tokens`); many
sessions spread over both; killing the replica of a session moves it to a live one without a failed request."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from openai import OpenAI

from serve.graph import deployment_name

pytestmark = pytest.mark.graph

APP = "routing"
MODEL = "tiny-routing"
SYSTEM = ("You are the assistant of a lighthouse museum. The lighthouse was built in 1874 on the northern reef; its "
          "keepers lived in the cottage beside it until 1952, when the light was automated. ") * 3


@pytest.fixture(scope="module")
def routing_url(ray_serve, model_cache_dir, tiny_model_dir, tmp_path_factory):
    from ray import serve

    from serve.config import parse_config
    from serve.graph import build_graph

    cfg = parse_config({
        "model_cache_dir": str(model_cache_dir),
        "data_dir": str(tmp_path_factory.mktemp("routing-data")),
        "ingress": {"max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 0.05}},
        "models": [{
            "model_id": MODEL, "source": str(tiny_model_dir),
            "engine": {"max_num_seqs": 4, "max_model_len": 1024, "kv_cache_tokens": 8192},
            "deployment": {"num_replicas": 2, "max_ongoing_requests": 8, "ray_actor_options": {"num_cpus": 0.05}},
        }],
        "agents": {"deployment": {"ray_actor_options": {"num_cpus": 0.05}}},
    })
    assert cfg.models[0].serve_options()["request_router_config"]["request_router_kwargs"]["policy"] == "prefix_aware"
    serve.run(build_graph(cfg), name=APP, route_prefix=f"/{APP}")
    yield f"{ray_serve}/{APP}"
    serve.delete(APP)


@pytest.fixture(scope="module")
def client(routing_url) -> OpenAI:
    return OpenAI(base_url=f"{routing_url}/v1", api_key="none", max_retries=0, timeout=60)


def _running() -> int:
    from ray import serve

    states = serve.status().applications[APP].deployments[deployment_name(MODEL)].replica_states
    return {str(k): v for k, v in states.items()}.get("RUNNING", 0)


def served() -> Counter:
    """Chat calls taken so far, per replica: `stats` carries no session or prompt, so the router spreads those
    calls by load (ties at random) and a few dozen reach every running replica."""
    from ray import serve

    handle = serve.get_deployment_handle(deployment_name(MODEL), app_name=APP)
    seen: dict[str, int] = {}
    for _ in range(60):
        s = handle.stats.remote().result()
        seen[s["replica"]] = s["requests"]
        if len(seen) >= _running():
            break
    return Counter(seen)


def went_to(before: Counter, n: int) -> str:
    """The one replica that took all `n` calls made since `before`."""
    delta = {r: c - before.get(r, 0) for r, c in served().items() if c - before.get(r, 0)}
    assert list(delta.values()) == [n], f"calls spread over replicas: {delta}"
    return next(iter(delta))


def chat(client: OpenAI, history: list[dict], **kw):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": SYSTEM}, *history],
                                       max_tokens=6, temperature=0, **kw)
    history.append({"role": "assistant", "content": r.choices[0].message.content or "..."})
    return r


def conversation(client: OpenAI, turns: int, **kw) -> list:
    history, usages = [], []
    for t in range(turns):
        history.append({"role": "user", "content": f"Question {t} of {uuid.uuid4().hex}: when was it built?"})
        usages.append(chat(client, history, **kw).usage)
    return usages


def test_one_conversation_session_and_chain_each_stay_on_one_replica(client):
    assert _running() == 2
    before = served()
    usages = conversation(client, 4, extra_body={"prompt_cache_key": f"conv-{uuid.uuid4().hex}"})
    went_to(before, 4)
    # every later turn starts with the earlier one's prompt, cached on the replica that served it
    assert all(u.prompt_tokens_details.cached_tokens > 0 for u in usages[1:]), usages

    before = served()
    conversation(client, 4, extra_headers={"x-session-id": f"sess-{uuid.uuid4().hex}"})
    went_to(before, 4)

    before = served()
    first = client.responses.create(model=MODEL, input="When was the lighthouse built?", max_output_tokens=6)
    second = client.responses.create(model=MODEL, input="And automated?", previous_response_id=first.id,
                                     max_output_tokens=6)
    events = list(client.responses.create(model=MODEL, input="Steps?", previous_response_id=second.id,
                                          max_output_tokens=6, stream=True))
    went_to(before, 3)  # one chain: its first response's id keys all three model calls
    third = events[-1].response
    assert third.status in ("completed", "incomplete") and third.usage.input_tokens_details.cached_tokens > 0


def test_different_sessions_spread_over_both_replicas(client):
    before = served()
    for i in range(16):
        key = f"user-{i}-{uuid.uuid4().hex}"
        chat(client, [{"role": "user", "content": f"Hello {i}"}], extra_body={"prompt_cache_key": key})
    delta = {r: c - before.get(r, 0) for r, c in served().items()}
    assert sum(delta.values()) == 16 and all(n > 0 for n in delta.values()) and len(delta) == 2, delta


def _replica_actor(replica: str):
    import ray

    names = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].endswith(f"#{replica}")]
    assert len(names) == 1, names
    return ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])


def test_killing_the_sessions_replica_moves_the_session_without_a_failed_request(client):
    import ray

    key = f"conv-{uuid.uuid4().hex}"
    history = []
    before = served()
    for t in range(2):
        history.append({"role": "user", "content": f"Question {t}: when was it built?"})
        chat(client, history, extra_body={"prompt_cache_key": key})
    home = went_to(before, 2)

    ray.kill(_replica_actor(home), no_restart=True)
    history.append({"role": "user", "content": "And when was it automated?"})
    chat(client, history, extra_body={"prompt_cache_key": key})  # raises on a failed request (max_retries=0)

    deadline = time.monotonic() + 120  # Serve replaces the dead replica
    while _running() != 2 or home in served():
        assert time.monotonic() < deadline, "the killed replica was not replaced"
        time.sleep(0.5)
    before = served()
    for t in range(3):  # the session settles on one live replica again
        history.append({"role": "user", "content": f"Follow-up {t}?"})
        chat(client, history, extra_body={"prompt_cache_key": key})
    assert went_to(before, 3) != home
