"""The LLM request router's choice (deployments/inference/affinity.py) and its config, without Ray."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from deployments.inference.affinity import PrefixIndex, ReplicaChooser, block_hashes, rendezvous, request_affinity
from serve.config import parse_config
from serve.config.routing import ROUTER_CLASS
from serve.deploy_config import deployment_name, deployment_options
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest

REPLICAS = ["r1", "r2", "r3"]
SYSTEM = "You are a careful assistant. " * 40  # ~1,100 characters: four 256-character blocks


def chat(*turns: str, key: str | None = None) -> ChatCompletionRequest:
    messages = [{"role": "system", "content": SYSTEM}]
    messages += [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return ChatCompletionRequest(model="m", messages=messages, prompt_cache_key=key)


def first(choice) -> str:
    assert len(choice.ranks[0]) == 1, choice
    return choice.ranks[0][0]


# ---- what the router reads from a call ------------------------------------------------------------------------

def test_affinity_of_a_chat_completion_and_other_calls():
    key, text = request_affinity([chat("Hi", key="conv-1")], session_id="header-session")
    assert key == "conv-1"  # prompt_cache_key wins over the caller's session id
    assert SYSTEM in text and "Hi" in text
    assert request_affinity([chat("Hi")], session_id="header-session")[0] == "header-session"
    assert request_affinity([CompletionRequest(model="m", prompt="Once upon")]) == (None, "Once upon")
    assert request_affinity([]) == (None, "")  # stats, health: no request model
    # a longer chat starts with the text of the shorter one (the index matches prefixes)
    assert request_affinity([chat("Hi", "Hello!", "More")])[1].startswith(request_affinity([chat("Hi")])[1])


def test_rendezvous_is_stable_and_moves_only_the_sessions_of_a_removed_replica():
    keys = [f"session-{i}" for i in range(300)]
    before = {k: rendezvous(k, REPLICAS)[0] for k in keys}
    assert before == {k: rendezvous(k, list(reversed(REPLICAS)))[0] for k in keys}  # order of replicas is moot
    spread = Counter(before.values())
    assert set(spread) == set(REPLICAS) and min(spread.values()) > 60  # ~100 each
    after = {k: rendezvous(k, ["r1", "r3"])[0] for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != "r2")  # only r2's sessions move
    assert {after[k] for k in keys if before[k] == "r2"} == {"r1", "r3"}


# ---- session affinity ------------------------------------------------------------------------------------------

def test_one_session_stays_on_one_replica_and_sessions_spread():
    chooser = ReplicaChooser("session")
    homes = {}
    for s in range(40):
        picks = {first(chooser.rank(REPLICAS, {}, f"s{s}", f"turn {t}")) for t in range(5)}
        assert len(picks) == 1
        homes[s] = picks.pop()
    assert set(homes.values()) == set(REPLICAS)


def test_session_yields_to_load_past_the_imbalance():
    chooser = ReplicaChooser("session", max_imbalance=2)
    home = first(chooser.rank(REPLICAS, {}, "s", ""))
    assert first(chooser.rank(REPLICAS, {home: 2}, "s", "")) == home  # 2 more than the idlest: still home
    choice = chooser.rank(REPLICAS, {home: 3, "r1" if home != "r1" else "r2": 1}, "s", "")
    assert choice.reason == "load" and len(choice.ranks) == 1
    assert choice.ranks[0][-1] == home  # the busy home comes last


def test_home_replica_removed_moves_the_session():
    chooser = ReplicaChooser("session")
    home = first(chooser.rank(REPLICAS, {}, "s", ""))
    rest = [r for r in REPLICAS if r != home]
    moved = first(chooser.rank(rest, {}, "s", ""))
    assert moved in rest and first(chooser.rank(rest, {}, "s", "")) == moved


def test_without_a_session_the_session_policy_balances_load():
    chooser = ReplicaChooser("session")
    choice = chooser.rank(REPLICAS, {"r1": 3, "r2": 0, "r3": 1}, None, "some prompt " * 100)
    assert choice.reason == "load" and choice.ranks == [["r2", "r3", "r1"]]
    idle = Counter(chooser.rank(REPLICAS, {}, None, "").ranks[0][0] for _ in range(300))
    assert set(idle) == set(REPLICAS)  # ties in random order: idle replicas share the requests


# ---- prefix affinity -------------------------------------------------------------------------------------------

def test_prefix_follows_the_longest_match():
    chooser = ReplicaChooser("prefix_aware", block_chars=64)
    question = "Tell me about bees. " * 8  # longer than a block: a match counts whole blocks
    chooser.routed("r2", request_affinity([chat(question)])[1])
    chooser.routed("r3", request_affinity([chat("Something else entirely, " * 10)])[1])
    turn2 = request_affinity([chat(question, "Bees dance. " * 10, "And wasps?")])[1]
    choice = chooser.rank(REPLICAS, {}, None, turn2)
    # r2 holds the whole first turn, r3 only the system prompt: r2 first, the others by load after
    assert choice.reason == "prefix" and choice.ranks[0] == ["r2"] and sorted(choice.ranks[1]) == ["r1", "r3"]


def test_prefix_ties_go_by_load_and_a_busy_match_yields():
    chooser = ReplicaChooser("prefix_aware", max_imbalance=4, block_chars=64)
    text = request_affinity([chat("Question one")])[1]
    chooser.routed("r1", text)
    chooser.routed("r2", text)
    choice = chooser.rank(REPLICAS, {"r1": 1}, None, text)
    assert choice.ranks[0] == ["r1", "r2"] and choice.ranks[1] == ["r3"]  # Serve takes the idler of r1, r2
    choice = chooser.rank(REPLICAS, {"r1": 5, "r2": 5}, None, text)
    assert choice.reason == "load" and len(choice.ranks) == 1 and choice.ranks[0][0] == "r3"


def test_session_wins_over_prefix_and_no_match_goes_by_load():
    chooser = ReplicaChooser("prefix_aware", block_chars=64)
    text = request_affinity([chat("Question one")])[1]
    chooser.routed("r1", text)
    home = first(chooser.rank(REPLICAS, {}, "key-x", text))
    assert home == rendezvous("key-x", REPLICAS)[0]
    assert chooser.rank(REPLICAS, {}, None, "short").reason == "load"  # under one block: nothing to match
    assert chooser.rank(REPLICAS, {}, None, "z" * 500).reason == "load"


def test_removed_replica_is_forgotten():
    chooser = ReplicaChooser("prefix_aware", block_chars=64)
    text = request_affinity([chat("Question one")])[1]
    chooser.routed("r1", text)
    chooser.replicas_changed(["r2", "r3"])
    assert chooser.index.matches(text, REPLICAS) == {}
    assert chooser.rank(["r2", "r3"], {}, None, text).reason == "load"


def test_prefix_index_is_bounded_lru():
    index = PrefixIndex(block_chars=16, max_blocks_per_replica=8)
    old, new = "a" * 16 * 6, "b" * 16 * 6
    index.insert("r", old)
    index.insert("r", new)  # 12 blocks > 8: the oldest of `old` go
    assert index.matches(new, ["r"]) == {"r": 6}
    assert index.matches(old, ["r"]) == {}  # its first blocks went first, so nothing leads any more
    assert len(block_hashes("x" * 40, 16)) == 2  # whole blocks only


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy"):
        ReplicaChooser("power_of_two")


# ---- config ----------------------------------------------------------------------------------------------------

def _llm_options(deployment: dict, routing: dict | None = None) -> dict:
    model = {"model_id": "m", "source": "/tmp/none", "deployment": deployment}
    if routing is not None:
        model["routing"] = routing
    return deployment_options(parse_config({"models": [model]}))[deployment_name("m")]


def test_routing_defaults_follow_the_replica_count():
    assert "request_router_config" not in _llm_options({})  # one replica: Serve's default router
    assert "request_router_config" not in _llm_options({"num_replicas": 1})
    many = _llm_options({"num_replicas": 2})["request_router_config"]
    assert many["request_router_class"] == ROUTER_CLASS and many["request_router_kwargs"]["policy"] == "prefix_aware"
    scaled = _llm_options({"autoscaling_config": {"min_replicas": 1, "max_replicas": 3}})
    assert scaled["request_router_config"]["request_router_kwargs"]["policy"] == "prefix_aware"
    assert "request_router_config" not in _llm_options({"autoscaling_config": {"max_replicas": 1}})
    assert "request_router_config" in _llm_options({"num_replicas": "auto"})


def test_routing_policy_is_configurable():
    session = _llm_options({"num_replicas": 2}, {"policy": "session", "max_imbalance": 8})
    assert session["request_router_config"]["request_router_kwargs"] == {
        "policy": "session", "max_imbalance": 8, "block_chars": 256, "max_blocks_per_replica": 20000}
    kwargs = _llm_options({"num_replicas": 2})["request_router_config"]["request_router_kwargs"]
    assert kwargs["max_imbalance"] == 16  # the default max_num_seqs
    assert "request_router_config" not in _llm_options({"num_replicas": 2}, {"policy": "power_of_two"})
    assert "request_router_config" in _llm_options({}, {"policy": "prefix_aware"})  # asked for: kept
    with pytest.raises(Exception, match="policy"):
        _llm_options({}, {"policy": "round_robin"})


def test_router_options_pass_serve_validation():
    from ray.serve.config import RequestRouterConfig

    opts = _llm_options({"num_replicas": 2})["request_router_config"]
    assert RequestRouterConfig(**opts).request_router_kwargs["policy"] == "prefix_aware"


def test_ray_prefix_cache_policy_is_rays_router_reading_our_typed_requests():
    from ray.serve._private.common import RequestMetadata
    from ray.serve.request_router import PendingRequest

    from deployments.inference.ray_prefix_router import RayPrefixCacheRouter

    opts = _llm_options({"num_replicas": 2}, {"policy": "ray_prefix_cache", "max_imbalance": 3})
    assert opts["request_router_config"] == {
        "request_router_class": "deployments.inference.ray_prefix_router:RayPrefixCacheRouter",
        "request_router_kwargs": {"imbalanced_threshold": 3}}

    def text(*args):
        async def read():  # a PendingRequest holds an asyncio future: it is made on a running loop, as in Serve
            meta = RequestMetadata(request_id="r", internal_request_id="i")
            pr = PendingRequest(args=list(args), kwargs={}, metadata=meta)
            return RayPrefixCacheRouter._extract_text_from_request(None, pr)

        return asyncio.run(read())

    assert SYSTEM in text(chat("Hi")) and "Hi" in text(chat("Hi"))  # Ray's own reader finds "" in typed messages
    assert text(CompletionRequest(model="m", prompt="Once upon")) == "Once upon"
    assert text() is None  # stats, health: Ray routes those on load
