"""Anthropic's Messages API through the running graph, on each engine, with the official `anthropic` SDK: a message,
its stream (the SDK's accumulated message equals the whole one), a tool round trip with tool_choice any, stop
sequences, max_tokens, count_tokens, the x-api-key header, and errors in Anthropic's shape. SmolLM2 where the
answer matters, the tiny random model where only the constraint machinery does."""

from __future__ import annotations

import anthropic
import httpx
import jsonschema
import pytest
from anthropic import Anthropic

from tests.conftest import API_KEY, SMOLLM2, TINY, EngineTarget

pytestmark = pytest.mark.graph

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
WEATHER = {"name": "get_weather", "description": "Get the current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"},
                                                             "days": {"type": "integer", "minimum": 1}},
                            "required": ["city", "days"], "additionalProperties": False}}
ASK_WEATHER = [{"role": "user", "content": "What's the weather in Paris?"}]
# anthropic 2.14's create() names no sampling parameters: temperature (which we take) rides as an extra body field
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def smol(engine: EngineTarget) -> Anthropic:
    return Anthropic(base_url=engine.smol_url, api_key=API_KEY, max_retries=0)


@pytest.fixture(scope="module")
def tiny(engine: EngineTarget) -> Anthropic:
    return Anthropic(base_url=engine.tiny_url, api_key=API_KEY, max_retries=0)


def _blocks(message) -> list[dict]:
    """The content blocks as plain data (the stream helper's blocks are its Parsed* subclasses)."""
    return [b.model_dump(exclude={"parsed_output"}) for b in message.content]


def _prompt(usage) -> int:
    """The whole prompt: Anthropic counts tokens read from the (engine's prefix) cache apart from `input_tokens`,
    and any earlier test may have left this prompt's first blocks in the cache."""
    return usage.input_tokens + usage.cache_read_input_tokens


def test_message(smol):
    r = smol.messages.create(model=SMOLLM2, max_tokens=20, extra_body=GREEDY, messages=QUESTION)
    assert r.id.startswith("msg_") and r.type == "message" and r.role == "assistant" and r.model == SMOLLM2
    (block,) = r.content
    assert block.type == "text" and "Paris" in block.text
    assert r.stop_reason == "end_turn" and r.stop_sequence is None
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 20
    assert r.usage.cache_creation_input_tokens == 0


def test_cache_reads_are_apart_from_input_tokens(smol):
    """A repeated long system prompt is read from the engine's prefix cache; Anthropic counts those tokens in
    `cache_read_input_tokens`, not in `input_tokens` (their sum is the whole prompt)."""
    kw = {"model": SMOLLM2, "max_tokens": 4, "extra_body": GREEDY, "messages": QUESTION,
          "system": "You are a careful geography tutor. " * 20}
    first, second = smol.messages.create(**kw), smol.messages.create(**kw)
    assert second.usage.cache_read_input_tokens >= 64
    assert _prompt(second.usage) == _prompt(first.usage)


def test_stream_accumulates_to_the_message(smol):
    kw = {"model": SMOLLM2, "max_tokens": 24, "extra_body": GREEDY, "system": "Answer briefly.",
          "messages": [{"role": "user", "content": [{"type": "text", "text": "Name three colors."}]}]}
    whole = smol.messages.create(**kw)
    with smol.messages.stream(**kw) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
    assert _blocks(final) == _blocks(whole) and whole.content[0].text  # greedy: the same answer
    assert (final.stop_reason, final.stop_sequence) == (whole.stop_reason, whole.stop_sequence)

    assert (_prompt(final.usage), final.usage.output_tokens) == (_prompt(whole.usage), whole.usage.output_tokens)
    raw = list(smol.messages.create(**kw, stream=True))
    assert _prompt(raw[0].message.usage) == _prompt(whole.usage)  # known at message_start
    assert [e.type for e in raw][-2:] == ["message_delta", "message_stop"]


def test_tool_round_trip_any(tiny):
    first = tiny.messages.create(model=TINY, max_tokens=60, messages=ASK_WEATHER, tools=[WEATHER],
                                 tool_choice={"type": "any", "disable_parallel_tool_use": True})
    (call,) = first.content
    assert first.stop_reason == "tool_use" and call.type == "tool_use" and call.name == "get_weather"
    assert call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER["input_schema"])  # the grammar's guarantee, on random weights
    history = [*ASK_WEATHER, {"role": "assistant", "content": first.content},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    answer = tiny.messages.create(model=TINY, max_tokens=5, messages=history, tools=[WEATHER],
                                  tool_choice={"type": "none"})
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert all(b.type == "text" for b in answer.content)
    alone = tiny.messages.count_tokens(model=TINY, messages=ASK_WEATHER, tools=[WEATHER], tool_choice={"type": "none"})
    assert _prompt(answer.usage) > alone.input_tokens  # the call and its result are in the prompt


def test_named_tool_streamed(tiny):
    with tiny.messages.stream(model=TINY, max_tokens=60, messages=ASK_WEATHER, tools=[WEATHER],
                              tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    (call,) = final.content
    assert call.type == "tool_use" and final.stop_reason == "tool_use" and deltas == ["input_json_delta"]
    jsonschema.validate(call.input, WEATHER["input_schema"])


def test_stop_sequences(smol):
    kw = {"model": SMOLLM2, "extra_body": GREEDY, "messages": QUESTION}
    text = smol.messages.create(max_tokens=20, **kw).content[0].text
    word = text.split()[-1]
    r = smol.messages.create(max_tokens=20, stop_sequences=["zzz-never", word], **kw)
    assert (r.stop_reason, r.stop_sequence) == ("stop_sequence", word)
    assert word not in "".join(b.text for b in r.content)
    with smol.messages.stream(max_tokens=20, stop_sequences=[word], **kw) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence, _blocks(final)) == (r.stop_reason, word, _blocks(r))


def test_max_tokens_stop_reason(smol):
    r = smol.messages.create(model=SMOLLM2, max_tokens=3, extra_body=GREEDY,
                             messages=[{"role": "user", "content": "Count from one to twenty in words."}])
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 3


def test_count_tokens_is_the_prompt_of_the_request(smol):
    kw = {"model": SMOLLM2, "system": [{"type": "text", "text": "You know the weather."}], "messages": ASK_WEATHER,
          "tools": [WEATHER]}
    counted = smol.messages.count_tokens(**kw)
    used = _prompt(smol.messages.create(max_tokens=1, **kw).usage)
    assert counted.input_tokens == used
    assert smol.messages.count_tokens(model=SMOLLM2, messages=ASK_WEATHER).input_tokens < used  # tools count


def test_x_api_key(engine):
    """engine.tiny_url is an application with API keys on."""
    wrong = Anthropic(base_url=engine.tiny_url, default_headers={"x-api-key": "wrong"}, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        wrong.messages.count_tokens(model=TINY, messages=ASK_WEATHER)
    assert err.value.status_code == 401 and err.value.body["error"]["type"] == "authentication_error"
    right = Anthropic(base_url=engine.tiny_url, default_headers={"x-api-key": API_KEY}, max_retries=0)
    assert right.messages.count_tokens(model=TINY, messages=ASK_WEATHER).input_tokens > 0


def _assert_anthropic_error(r: httpx.Response, status: int, kind: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert body["error"]["type"] == kind and body["error"]["message"]


def test_errors_in_anthropic_shape(engine, smol):
    with pytest.raises(anthropic.NotFoundError) as err:
        smol.messages.create(model="nope", max_tokens=5, messages=QUESTION)
    assert err.value.body["error"]["type"] == "not_found_error"
    url = engine.smol_url + "/v1/messages"
    body = {"model": SMOLLM2, "messages": QUESTION, "max_tokens": 16}
    missing = httpx.post(url, json={"model": SMOLLM2, "messages": QUESTION}, headers=engine.headers, timeout=60)
    _assert_anthropic_error(missing, 400, "invalid_request_error")
    assert "max_tokens" in missing.json()["error"]["message"]
    for bad in ({**body, "max_tokens": 99999}, {**body, "stop_sequences": list("abcde")},
                {**body, "tool_choice": {"type": "tool", "name": "absent"}}):
        for stream in (False, True):  # a stream refused before its first event: the same plain error
            _assert_anthropic_error(httpx.post(url, json={**bad, "stream": stream}, headers=engine.headers,
                                               timeout=60), 400, "invalid_request_error")
    _assert_anthropic_error(httpx.post(url + "/count_tokens", json={"model": "nope", "messages": QUESTION},
                                       headers=engine.headers, timeout=60), 404, "not_found_error")
    openai_shape = httpx.post(engine.smol_url + "/v1/chat/completions", json={"model": "nope", "messages": QUESTION},
                              headers=engine.headers, timeout=60)
    assert openai_shape.status_code == 404 and set(openai_shape.json()) == {"error"}  # other routes: OpenAI's
