"""Llama Stack 0.2's native Inference API through the running graph, on each engine, with llama-stack-client 0.2.12:
plain and streamed chat and completion, structured output, tool calling (required / none / a named tool),
logprobs, batches, embeddings, and errors in the OpenAI envelope. SmolLM2 where the answer matters, the tiny
random model where only the constraint machinery does."""

from __future__ import annotations

import json

import httpx
import pytest
from llama_stack_client import LlamaStackClient
from openai import OpenAI

from tests.conftest import API_KEY, SMOLLM2, TINY, EngineTarget
from tests.test_graph_api import _assert_error

pytestmark = pytest.mark.graph

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
WEATHER = {"tool_name": "get_weather", "description": "Get the current weather in a city",
           "parameters": {"city": {"param_type": "string", "description": "the city", "required": True},
                          "days": {"param_type": "int", "description": "forecast days", "required": False}}}
CLOCK = {"tool_name": "get_time", "description": "The time in a timezone",
         "parameters": {"timezone": {"param_type": "str", "required": True}}}
ASK_WEATHER = [{"role": "user", "content": "What's the weather in Paris?"}]
GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 20}


@pytest.fixture(scope="module")
def smol(engine: EngineTarget) -> LlamaStackClient:
    return LlamaStackClient(base_url=engine.smol_url, api_key=API_KEY, max_retries=0)


@pytest.fixture(scope="module")
def tiny(engine: EngineTarget) -> LlamaStackClient:
    return LlamaStackClient(base_url=engine.tiny_url, api_key=API_KEY, max_retries=0)


def test_chat_completion_plain_and_streamed(smol):
    r = smol.inference.chat_completion(model_id=SMOLLM2, messages=QUESTION, sampling_params=GREEDY)
    msg = r.completion_message
    assert "Paris" in msg.content
    assert msg.role == "assistant" and msg.stop_reason == "end_of_turn" and not msg.tool_calls
    metrics = {m.metric: m.value for m in r.metrics}
    assert metrics["total_tokens"] == metrics["prompt_tokens"] + metrics["completion_tokens"] > 0

    chunks = list(smol.inference.chat_completion(model_id=SMOLLM2, messages=QUESTION, sampling_params=GREEDY,
                                                 stream=True))
    kinds = [c.event.event_type for c in chunks]
    assert kinds[0] == "start" and kinds[-1] == "complete" and set(kinds[1:-1]) == {"progress"}
    assert "".join(c.event.delta.text for c in chunks) == msg.content  # greedy: the stream folds to the answer
    assert chunks[-1].event.stop_reason == "end_of_turn"
    assert {m.metric: m.value for m in chunks[-1].metrics} == metrics


def test_chat_completion_history_and_budget(smol):
    history = [{"role": "system", "content": "You are terse."},
               {"role": "user", "content": [{"type": "text", "text": "Name a primary color."}]},
               {"role": "assistant", "content": "Red.", "stop_reason": "end_of_turn"},
               {"role": "user", "content": "Count from one to twenty in words."}]
    r = smol.inference.chat_completion(model_id=SMOLLM2, messages=history,
                                       sampling_params={"strategy": {"type": "top_p", "temperature": 0.7,
                                                                     "top_p": 0.9}, "max_tokens": 3})
    used = {m.metric: m.value for m in r.metrics}["completion_tokens"]
    assert 0 < used <= 3  # sampled: it may end early, never later
    assert r.completion_message.stop_reason == ("out_of_tokens" if used == 3 else "end_of_turn")


def test_completion_plain_streamed_and_stop(smol):
    r = smol.inference.completion(model_id=SMOLLM2, content="The capital of France is",
                                  sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 8})
    assert r.content and r.stop_reason in ("out_of_tokens", "end_of_turn")
    chunks = list(smol.inference.completion(model_id=SMOLLM2, content="The capital of France is", stream=True,
                                            sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 8}))
    assert "".join(c.delta for c in chunks) == r.content
    assert chunks[-1].stop_reason == r.stop_reason
    word = r.content.split()[0]
    stopped = smol.inference.completion(model_id=SMOLLM2, content="The capital of France is",
                                        sampling_params={"max_tokens": 8, "stop": [word]})
    assert word not in stopped.content and stopped.stop_reason == "end_of_turn"


def test_logprobs_top_k(smol):
    r = smol.inference.completion(model_id=SMOLLM2, content="One, two, three,", logprobs={"top_k": 2},
                                  sampling_params={"max_tokens": 4})
    assert 1 <= len(r.logprobs) <= 4 and all(len(t.logprobs_by_token) == 2 for t in r.logprobs)
    chunks = list(smol.inference.completion(model_id=SMOLLM2, content="One, two, three,", logprobs={"top_k": 1},
                                            sampling_params={"max_tokens": 4}, stream=True))
    for c in chunks:
        assert bool(c.delta) == bool(c.logprobs)
        assert all(len(t.logprobs_by_token) == 1 for t in c.logprobs or [])
    chat = smol.inference.chat_completion(model_id=SMOLLM2, messages=QUESTION, logprobs={"top_k": 1},
                                          sampling_params=GREEDY)
    assert chat.logprobs and all(len(t.logprobs_by_token) == 1 for t in chat.logprobs)


def test_structured_output_json_schema_and_grammar(tiny):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "year": {"type": "integer"}},
              "required": ["name", "year"]}
    r = tiny.inference.chat_completion(model_id=TINY, messages=QUESTION, sampling_params={"max_tokens": 60},
                                       response_format={"type": "json_schema", "json_schema": schema})
    answer = json.loads(r.completion_message.content)
    assert isinstance(answer["name"], str) and isinstance(answer["year"], int)
    r = tiny.inference.chat_completion(model_id=TINY, messages=QUESTION, sampling_params={"max_tokens": 10},
                                       response_format={"type": "grammar", "bnf": {"root": '"yes" | "no"'}})
    assert r.completion_message.content in ("yes", "no")
    c = tiny.inference.completion(model_id=TINY, content="A person:", sampling_params={"max_tokens": 60},
                                  response_format={"type": "json_schema", "json_schema": schema})
    assert set(json.loads(c.content)) == {"name", "year"}


def _calls(chunks) -> list:
    return [c.event.delta.tool_call for c in chunks
            if c.event.delta.type == "tool_call" and c.event.delta.parse_status == "succeeded"]


def test_tool_choice_required_none_and_named(tiny):
    r = tiny.inference.chat_completion(model_id=TINY, messages=ASK_WEATHER, tools=[WEATHER, CLOCK],
                                       tool_config={"tool_choice": "required"}, sampling_params={"max_tokens": 60})
    msg = r.completion_message
    assert msg.stop_reason == "end_of_message" and len(msg.tool_calls) >= 1
    call = msg.tool_calls[0]
    assert call.tool_name in ("get_weather", "get_time") and call.call_id
    assert isinstance(call.arguments, dict) and json.loads(call.arguments_json) == call.arguments

    chunks = list(tiny.inference.chat_completion(model_id=TINY, messages=ASK_WEATHER, tools=[WEATHER, CLOCK],
                                                 tool_config={"tool_choice": "get_time"}, stream=True,
                                                 sampling_params={"max_tokens": 60}))
    calls = _calls(chunks)
    assert [c.tool_name for c in calls] == ["get_time"] and "timezone" in calls[0].arguments
    assert chunks[-1].event.stop_reason == "end_of_message"

    none = list(tiny.inference.chat_completion(model_id=TINY, messages=ASK_WEATHER, tools=[WEATHER], stream=True,
                                               tool_config={"tool_choice": "none"}, sampling_params={"max_tokens": 8}))
    assert _calls(none) == [] and none[-1].event.stop_reason in ("end_of_turn", "out_of_tokens")


def test_tool_call_history_round_trip(tiny):
    first = tiny.inference.chat_completion(model_id=TINY, messages=ASK_WEATHER, tools=[WEATHER],
                                           tool_config={"tool_choice": "required"},
                                           sampling_params={"max_tokens": 60}).completion_message
    call = first.tool_calls[0]
    history = [*ASK_WEATHER, first.model_dump(), {"role": "tool", "call_id": call.call_id, "content": "sunny, 21C"}]
    r = tiny.inference.chat_completion(model_id=TINY, messages=history, tools=[WEATHER],
                                       tool_config={"tool_choice": "none"}, sampling_params={"max_tokens": 5})
    assert r.completion_message.role == "assistant" and not r.completion_message.tool_calls


def test_batch_chat_and_completion(smol):
    questions = [QUESTION, [{"role": "user", "content": "Say hello."}]]
    r = smol.inference.batch_chat_completion(model_id=SMOLLM2, messages_batch=questions, sampling_params=GREEDY)
    assert len(r.batch) == 2 and "Paris" in r.batch[0].completion_message.content
    single = smol.inference.chat_completion(model_id=SMOLLM2, messages=questions[1], sampling_params=GREEDY)
    assert r.batch[1].completion_message.content == single.completion_message.content
    c = smol.inference.batch_completion(model_id=SMOLLM2, content_batch=["Once upon a time", "1, 2, 3,"],
                                        sampling_params={"max_tokens": 5})
    assert len(c.batch) == 2 and all(x.content for x in c.batch)


def test_embeddings_match_openai_route(engine):
    if engine.engine != "meta-reference":
        pytest.skip("embeddings run on no LLM engine: checked once, in the main graph")
    base_url = engine.smol_url
    model = "sentence-transformers/all-MiniLM-L6-v2"
    lls = LlamaStackClient(base_url=base_url, api_key=API_KEY, max_retries=0)
    r = lls.inference.embeddings(model_id=model, contents=["a red apple", {"type": "text", "text": "green"}])
    assert len(r.embeddings) == 2 and all(len(e) == 384 for e in r.embeddings)
    oai = OpenAI(base_url=base_url + "/v1", api_key=API_KEY, max_retries=0)
    ref = oai.embeddings.create(model=model, input=["a red apple"]).data[0].embedding
    assert r.embeddings[0] == pytest.approx(ref, abs=1e-5)
    wrong = httpx.post(base_url + "/v1/inference/embeddings", json={"model_id": SMOLLM2, "contents": ["x"]},
                       headers=engine.headers, timeout=60)
    _assert_error(wrong, 400, "model_id")  # a chat model


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("chat-completion", {"model_id": "nope", "messages": QUESTION}, 404, "model_id"),
    ("chat-completion", {"model_id": SMOLLM2, "messages": []}, 400, "messages"),
    ("chat-completion", {"model_id": SMOLLM2, "messages": QUESTION,
                         "sampling_params": {"strategy": {"type": "beam"}}}, 400, None),
    ("chat-completion", {"model_id": SMOLLM2, "messages": QUESTION,
                         "sampling_params": {"stop": ["a", "b", "c", "d", "e"]}}, 400, "sampling_params.stop"),
    ("chat-completion", {"model_id": SMOLLM2, "messages": QUESTION, "tools": [WEATHER],
                         "tool_config": {"tool_choice": "missing_tool"}}, 400, "tool_config.tool_choice"),
    ("chat-completion", {"model_id": SMOLLM2, "messages": [{"role": "user", "content": {
        "type": "image", "image": {"url": {"uri": "https://example.com/a.png"}}}}]}, 400, "messages.0.content"),
    ("completion", {"model_id": SMOLLM2, "content": "hi", "sampling_params": {"max_tokens": 99999}}, 400,
     "sampling_params.max_tokens"),
    ("batch-completion", {"model_id": SMOLLM2, "content_batch": []}, 400, "content_batch"),
])
def test_errors_in_the_envelope(engine, path, body, status, param):
    url = engine.smol_url + "/v1/inference/" + path
    r = httpx.post(url, json=body, headers=engine.headers, timeout=60)
    _assert_error(r, status, param)
    if path == "chat-completion":  # a stream refused before its first chunk is the same plain error
        s = httpx.post(url, json={**body, "stream": True}, headers=engine.headers, timeout=60)
        _assert_error(s, status, param)
