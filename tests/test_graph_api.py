"""The stack through the running graph: models, providers and their health, routes, errors and auth, real clients
over HTTP.

Inference itself is in the engine behaviour suite (test_graph_inference.py, test_graph_engine.py)."""

from __future__ import annotations

import time

import httpx
import llama_stack_client
import pytest
from llama_stack_client import LlamaStackClient
from openai import OpenAI

from tests.conftest import API_KEY, SMOLLM2

pytestmark = pytest.mark.graph

MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module", params=["/v1/openai/v1", "/v1"])
def oai(request, base_url) -> OpenAI:
    return OpenAI(base_url=base_url + request.param, api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def lls(base_url) -> LlamaStackClient:
    return LlamaStackClient(base_url=base_url, max_retries=0)


def test_models_list_openai(oai):
    models = {m.id: m for m in oai.models.list().data}
    assert SMOLLM2 in models
    assert models[SMOLLM2].owned_by == "stackserve"
    assert oai.models.retrieve(SMOLLM2).id == SMOLLM2  # the id contains a slash


def test_models_list_llama_stack(lls):
    models = {m.identifier: m for m in lls.models.list()}
    assert models[SMOLLM2].api_model_type == "llm"
    assert models[SMOLLM2].provider_id == "meta-reference"
    assert models[SMOLLM2].metadata["context_length"] == 2048
    embed = models["sentence-transformers/all-MiniLM-L6-v2"]
    assert embed.api_model_type == "embedding"
    assert embed.metadata["embedding_dimension"] == 384
    assert lls.models.retrieve(SMOLLM2).identifier == SMOLLM2


def test_stack_routes(base_url, lls):
    assert lls.inspect.health().status == "OK"
    assert lls.inspect.version().version
    routes = {(r["route"], r["method"]): r["provider_types"]
              for r in httpx.get(f"{base_url}/v1/inspect/routes").json()["data"]}
    assert "inline::meta-reference" in routes["/v1/openai/v1/chat/completions", "POST"]
    assert routes["/v1/datasets", "POST"] == ["inline::localfs", "remote::huggingface"]
    assert routes["/v1/models", "GET"] and routes["/v1/health", "GET"] == []


def test_providers_are_what_the_graph_runs(lls, secure_url):
    providers = lls.providers.list()
    types = {(p.api, p.provider_id): p.provider_type for p in providers}
    assert types["inference", "meta-reference"] == "inline::meta-reference"  # as the engine reports itself
    assert types["inference", "scripted"] == "inline::scripted"  # the guard's injected engine
    assert types["inference", "sentence-transformers"] == "inline::sentence-transformers"
    assert types["vector_io", "faiss"] == "inline::faiss"
    assert types["files", "meta-reference-files"] == "inline::localfs"
    assert types["datasetio", "localfs"] == "inline::localfs"
    assert types["datasetio", "huggingface"] == "remote::huggingface"
    assert types["tool_runtime", "brave-search"] == "remote::brave-search"
    assert types["agents", "meta-reference"] == "inline::meta-reference"
    assert types["telemetry", "meta-reference"] == "inline::meta-reference"
    assert types["safety", "prompt-guard"] == "inline::prompt-guard"
    assert not any("vllm" in t for t in types.values())  # no vLLM in this graph
    assert all(p.health == {"status": "OK"} for p in providers), [(p.provider_id, p.health) for p in providers]
    for p in providers:  # what Llama Stack's own providers test does
        assert lls.providers.retrieve(p.provider_id).provider_id == p.provider_id
    with pytest.raises(llama_stack_client.NotFoundError):
        lls.providers.retrieve("remote::vllm")
    # the secure graph has one model and no service deployments: that is all it lists
    secure = httpx.get(f"{secure_url}/v1/providers", headers={"Authorization": f"Bearer {API_KEY}"}).json()["data"]
    assert [(p["api"], p["provider_id"], p["health"]["status"]) for p in secure] == [
        ("inference", "meta-reference", "OK")]


def _wait_for(check, timeout: float = 30.0):
    deadline = time.time() + timeout
    while not (result := check()) and time.time() < deadline:
        time.sleep(0.3)
    return result


def test_a_failing_deployment_shows_in_providers_and_health(lls, base_url, data_dir):
    """DatasetIO's Parquet directory breaks (a file where the directory was: nothing can be written there): its
    providers report the error and /v1/health turns Error; everything else stays OK; putting the directory back
    heals both."""
    parts, away = data_dir / "datasets", data_dir / "datasets.away"
    parts.mkdir(exist_ok=True)
    parts.rename(away)
    parts.write_bytes(b"not a directory")
    try:
        assert _wait_for(lambda: lls.inspect.health().status == "Error")
        by_id = {(p.api, p.provider_id): p.health for p in lls.providers.list()}
        assert by_id["datasetio", "localfs"]["status"] == "Error" and "datasets" in by_id["datasetio", "localfs"][
            "message"]
        assert by_id["datasetio", "huggingface"]["status"] == "Error"
        assert by_id["vector_io", "faiss"] == by_id["inference", "meta-reference"] == {"status": "OK"}
        assert httpx.get(f"{base_url}/v1/health").json() == {"status": "Error"}  # no reasons on the open route
    finally:
        parts.unlink()
        away.rename(parts)
    assert _wait_for(lambda: lls.inspect.health().status == "OK")
    assert lls.providers.retrieve("localfs").health == {"status": "OK"}


# ---- errors: OpenAI envelope and status, never a 500 ---------------------------------------------------------

def _post(base_url: str, path: str, **kw) -> httpx.Response:
    return httpx.post(base_url + path, timeout=60, **kw)


def _assert_error(r: httpx.Response, status: int, param: str | None = None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if param is not None:
        assert err["param"] == param


@pytest.mark.parametrize("prefix", ["/v1", "/v1/openai/v1"])
def test_unknown_model_404(base_url, prefix):
    r = _post(base_url, f"{prefix}/chat/completions", json={"model": "nope", "messages": MESSAGES})
    _assert_error(r, 404, "model")
    _assert_error(httpx.get(f"{base_url}{prefix}/models/nope/at-all"), 404)


def test_openai_sdk_raises_typed_errors(oai):
    import openai

    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="nope", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=SMOLLM2, messages=MESSAGES, temperature=7)
    assert e.value.body["param"] == "temperature"


def test_malformed_json_400(base_url):
    r = _post(base_url, "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    _assert_error(r, 400)


@pytest.mark.parametrize("body,param", [
    ({"model": SMOLLM2}, "messages"),
    ({"model": SMOLLM2, "messages": []}, "messages"),
    ({"model": SMOLLM2, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"model": SMOLLM2, "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
    ({"model": SMOLLM2, "messages": MESSAGES, "top_p": 2}, "top_p"),
    ({"model": SMOLLM2, "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": MESSAGES}, "model"),
])
def test_invalid_fields_400(base_url, body, param):
    _assert_error(_post(base_url, "/v1/chat/completions", json=body), 400, param)


def test_unknown_route_404(base_url):
    _assert_error(httpx.get(f"{base_url}/v1/nothing-here"), 404)


# ---- auth ------------------------------------------------------------------------------------------------------

def test_auth_off_by_default(base_url):
    assert httpx.get(f"{base_url}/v1/models").status_code == 200


def test_auth_on(secure_url):
    from tests.conftest import TINY

    _assert_error(httpx.get(f"{secure_url}/v1/models"), 401)
    _assert_error(httpx.get(f"{secure_url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    assert httpx.get(f"{secure_url}/v1/health").status_code == 200  # health stays open
    client = OpenAI(base_url=f"{secure_url}/v1", api_key=API_KEY, max_retries=0)
    assert [m.id for m in client.models.list().data] == [TINY]
    r = client.chat.completions.create(model=TINY, messages=MESSAGES, max_tokens=4)
    assert r.usage.completion_tokens <= 4
