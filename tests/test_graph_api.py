"""The foundation through the running graph: real SmolLM2 on the meta-reference engine, real clients over HTTP."""

from __future__ import annotations

import httpx
import pytest
from llama_stack_client import LlamaStackClient
from openai import OpenAI

from tests.conftest import SMOLLM2

pytestmark = pytest.mark.graph

MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module", params=["/v1/openai/v1", "/v1"])
def oai(request, base_url) -> OpenAI:
    return OpenAI(base_url=base_url + request.param, api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def lls(base_url) -> LlamaStackClient:
    return LlamaStackClient(base_url=base_url, max_retries=0)


def prompt_tokens(tokenizer, messages) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(text, add_special_tokens=False))


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


def test_chat_non_stream(oai, tokenizer):
    r = oai.chat.completions.create(model=SMOLLM2, messages=MESSAGES, max_tokens=20, temperature=0)
    text = r.choices[0].message.content
    assert "Paris" in text
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == prompt_tokens(tokenizer, MESSAGES)
    assert 0 < r.usage.completion_tokens <= 20
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_with_usage(oai, tokenizer):
    stream = oai.chat.completions.create(model=SMOLLM2, messages=MESSAGES, max_tokens=20, temperature=0, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert "Paris" in text
    assert finishes == ["stop"]
    assert usage.prompt_tokens == prompt_tokens(tokenizer, MESSAGES)
    # the same request without streaming gives the same text and token count (greedy)
    plain = oai.chat.completions.create(model=SMOLLM2, messages=MESSAGES, max_tokens=20, temperature=0)
    assert plain.choices[0].message.content == text
    assert plain.usage.completion_tokens == usage.completion_tokens


def test_max_tokens_gives_length(oai):
    r = oai.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "Write a long story."}],
                                    max_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    r = oai.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "Write a long story."}],
                                    max_completion_tokens=3)
    assert r.usage.completion_tokens == 3


def test_seed_reproducible(oai):
    kw = dict(model=SMOLLM2, messages=[{"role": "user", "content": "Tell me a random fact."}], max_tokens=24,
              temperature=1.0, top_p=0.95)
    a = oai.chat.completions.create(seed=1234, **kw).choices[0].message.content
    b = oai.chat.completions.create(seed=1234, **kw).choices[0].message.content
    others = {oai.chat.completions.create(seed=s, **kw).choices[0].message.content for s in (1, 2, 3)}
    assert a == b
    assert len(others | {a}) > 1  # different seeds do sample differently


def test_completions_plain_and_stream(oai):
    r = oai.completions.create(model=SMOLLM2, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.choices[0].text.strip()
    assert r.usage.completion_tokens == 8 or r.choices[0].finish_reason == "stop"
    chunks = list(oai.completions.create(model=SMOLLM2, prompt="The capital of France is", max_tokens=8,
                                         temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text
    assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason


def test_stop_sequence(oai):
    r = oai.completions.create(model=SMOLLM2, prompt="1, 2, 3, 4, 5,", max_tokens=30, temperature=0, stop=["8"])
    assert "8" not in r.choices[0].text
    assert r.choices[0].finish_reason == "stop"
    assert "7" in r.choices[0].text


def test_llama_stack_client_inference(lls):
    r = lls.chat.completions.create(model=SMOLLM2, messages=MESSAGES, max_tokens=20, temperature=0)
    assert "Paris" in r.choices[0].message.content
    chunks = list(lls.chat.completions.create(model=SMOLLM2, messages=MESSAGES, max_tokens=20, temperature=0,
                                              stream=True))
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    c = lls.completions.create(model=SMOLLM2, prompt="Hello, my name is", max_tokens=6)
    assert c.choices[0].text


def test_stack_routes(base_url, lls):
    assert lls.inspect.health().status == "OK"
    assert lls.inspect.version().version
    providers = {p["provider_type"] for p in httpx.get(f"{base_url}/v1/providers").json()["data"]}
    assert {"inline::meta-reference", "inline::sentence-transformers", "inline::faiss"} <= providers
    routes = {(r["route"], r["method"]) for r in httpx.get(f"{base_url}/v1/inspect/routes").json()["data"]}
    assert ("/v1/openai/v1/chat/completions", "POST") in routes
    assert ("/v1/models", "GET") in routes


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


def test_max_tokens_beyond_context_400(base_url):
    r = _post(base_url, "/v1/chat/completions", json={"model": SMOLLM2, "messages": MESSAGES, "max_tokens": 5000})
    _assert_error(r, 400, "max_tokens")
    assert r.json()["error"]["code"] == "context_length_exceeded"
    r = _post(base_url, "/v1/completions", json={"model": SMOLLM2, "prompt": "hi " * 3000, "max_tokens": 5})
    _assert_error(r, 400)


def test_stream_errors_before_headers(base_url):
    r = _post(base_url, "/v1/chat/completions",
              json={"model": SMOLLM2, "messages": MESSAGES, "max_tokens": 5000, "stream": True})
    _assert_error(r, 400, "max_tokens")


def test_unknown_route_404(base_url):
    _assert_error(httpx.get(f"{base_url}/v1/nothing-here"), 404)


# ---- auth ------------------------------------------------------------------------------------------------------

def test_auth_off_by_default(base_url):
    assert httpx.get(f"{base_url}/v1/models").status_code == 200


def test_auth_on(secure_url):
    from tests.conftest import API_KEY, TINY

    _assert_error(httpx.get(f"{secure_url}/v1/models"), 401)
    _assert_error(httpx.get(f"{secure_url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    assert httpx.get(f"{secure_url}/v1/health").status_code == 200  # health stays open
    client = OpenAI(base_url=f"{secure_url}/v1", api_key=API_KEY, max_retries=0)
    assert [m.id for m in client.models.list().data] == [TINY]
    r = client.chat.completions.create(model=TINY, messages=MESSAGES, max_tokens=4)
    assert r.usage.completion_tokens <= 4
