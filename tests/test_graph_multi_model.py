"""Several models in one graph, each on its own LLM deployment with its own engine: the vLLM application serves
SmolLM2 and the tiny model on vLLM and the same tiny model on meta-reference (conftest.py). `/v1/models` lists
all of them; requests route by model id."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from tests.conftest import API_KEY, SMOLLM2, TINY, TINY_META, llm_stats, vllm_installed

pytestmark = [pytest.mark.graph,
              pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed in this environment (`make "
                                 "test` runs this file in .venv-vllm)")]

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
ENGINES = {SMOLLM2: "vllm", TINY: "vllm", TINY_META: "meta-reference"}


@pytest.fixture(scope="module")
def client(vllm_url) -> OpenAI:
    return OpenAI(base_url=f"{vllm_url}/v1", api_key=API_KEY, max_retries=0)


def test_models_and_providers_list_every_engine(vllm_url):
    models = {m["id"]: m for m in httpx.get(f"{vllm_url}/v1/models", headers=HEADERS).json()["data"]}
    assert {m: models[m]["provider_id"] for m in ENGINES} == ENGINES
    assert {m: models[m]["metadata"]["engine"] for m in ENGINES} == ENGINES
    assert models[SMOLLM2]["metadata"]["context_length"] == 2048
    providers = {p["provider_id"]: p for p in httpx.get(f"{vllm_url}/v1/providers", headers=HEADERS).json()["data"]}
    assert providers["vllm"]["provider_type"] == "inline::vllm"
    assert sorted(providers["vllm"]["config"]["models"]) == sorted([SMOLLM2, TINY])
    assert providers["meta-reference"]["config"]["models"] == [TINY_META]


def test_each_model_has_its_own_engine_replicas():
    """SmolLM2 runs in the Ingress (`in_ingress`); the others on LLM deployments of their own."""
    from ray import serve

    from serve.graph import deployment_name

    deployments = serve.status().applications["vllm"].deployments
    assert {deployment_name(TINY), deployment_name(TINY_META), "Ingress"} <= set(deployments)
    assert deployment_name(SMOLLM2) not in deployments
    assert llm_stats("vllm", SMOLLM2)["max_num_seqs"] == 16  # asked of the Ingress


def test_requests_route_by_model_id(client):
    for model in (TINY_META, TINY):
        before = {m: llm_stats("vllm", m)["generated_tokens"] for m in ENGINES}
        r = client.completions.create(model=model, prompt="Hello", max_tokens=5, temperature=0,
                                      extra_body={"ignore_eos": True})
        assert r.model == model and r.usage.completion_tokens == 5
        after = {m: llm_stats("vllm", m)["generated_tokens"] for m in ENGINES}
        assert {m: after[m] - before[m] for m in ENGINES} == {m: 5 if m == model else 0 for m in ENGINES}


def test_same_weights_same_greedy_tokens_on_both_engines(client):
    """The tiny model's checkpoint served twice, once per engine: greedy decoding agrees token for token."""
    out = {m: client.completions.create(model=m, prompt="The quick brown fox", max_tokens=8, temperature=0,
                                        logprobs=0, extra_body={"ignore_eos": True}).choices[0]
           for m in (TINY, TINY_META)}
    assert out[TINY].logprobs.tokens == out[TINY_META].logprobs.tokens
    assert out[TINY].logprobs.token_logprobs == pytest.approx(out[TINY_META].logprobs.token_logprobs, abs=1e-3)
