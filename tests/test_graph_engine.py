"""Engine features through the graph with the OpenAI SDK: batching, sampling, structured output, tools, limits.

The engine behaviour suite: every test runs on each engine (the `engine` fixture, see conftest.py), with SmolLM2
and the tiny random model."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI

from tests.conftest import GUARD_SCRIPTED, SMOLLM2, TINY, EngineTarget, llm_stats

pytestmark = pytest.mark.graph

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a timezone",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}

SCHEMAS = {
    "nested": {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city", "zip"], "additionalProperties": False}},
        "required": ["name", "age", "address"], "additionalProperties": False},
    "array": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "sku": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["sku", "qty"]}, "minItems": 1}},
        "required": ["items"]},
    "enum": {"type": "object", "properties": {
        "color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"}, "score": {"type": "number"}},
        "required": ["color", "ok", "score"]},
}


@pytest.fixture(scope="module")
def smol(engine: EngineTarget) -> OpenAI:
    return engine.openai(SMOLLM2)


@pytest.fixture(scope="module")
def tiny(engine: EngineTarget) -> OpenAI:
    return engine.openai(TINY)


def _story(client, model, seed=None, max_tokens=32, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me a story."}],
                                          max_tokens=max_tokens, seed=seed, temperature=1.0, **kw)


def test_concurrent_requests_share_batches(smol, engine):
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: _story(smol, SMOLLM2, seed=i, max_tokens=24), range(16)))
    assert all(r.choices[0].message.content for r in results)
    assert all(r.usage.completion_tokens <= 24 for r in results)
    assert llm_stats(engine.smol_app, SMOLLM2)["max_batch_size_seen"] > 1


def test_seed_reproducible_inside_a_busy_batch(smol):
    alone = _story(smol, SMOLLM2, seed=77).choices[0].message.content
    with ThreadPoolExecutor(9) as pool:
        noise = [pool.submit(_story, smol, SMOLLM2, None, 48) for _ in range(8)]
        time.sleep(0.3)
        busy = pool.submit(_story, smol, SMOLLM2, 77).result().choices[0].message.content
        [f.result() for f in noise]
    assert busy == alone


@pytest.mark.parametrize("seed", [-5, 2**64 + 3])
def test_out_of_range_seeds_are_accepted(tiny, seed):
    runs = [_story(tiny, TINY, seed=seed, max_tokens=6).choices[0].message.content for _ in range(2)]
    assert runs[0] == runs[1]


def test_n_choices(smol):
    r = _story(smol, SMOLLM2, seed=5, n=2, max_tokens=16)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content != r.choices[1].message.content


def test_n_choices_usage_counts_all(smol):
    r = smol.completions.create(model=SMOLLM2, prompt="Once upon a time", max_tokens=6, n=3, seed=1,
                                extra_body={"ignore_eos": True})
    assert len(r.choices) == 3
    assert r.usage.completion_tokens == 18


def test_chat_logprobs_shape(smol):
    r = smol.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                     logprobs=True, top_logprobs=3, temperature=0)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob, abs=1e-4)  # greedy: the top token


@pytest.mark.parametrize("extra", [
    {"tools": [WEATHER], "tool_choice": "required"},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMAS["nested"]}}},
], ids=["tool_choice-required", "json_schema"])
@pytest.mark.parametrize("stream", [False, True])
def test_constrained_decoding_with_logprobs(engine, extra, stream):
    """Masked tokens' -inf logprobs never reach the JSON encoder (this answered 500 "Out of range float values are
    not JSON compliant"): every logprob is a finite number, streamed or not."""
    body = {"model": TINY, "messages": [{"role": "user", "content": "Weather in Oslo?"}], "max_tokens": 60,
            "logprobs": True, "top_logprobs": 5, "stream": stream, **extra}
    r = httpx.post(f"{engine.tiny_url}/v1/chat/completions", json=body, headers=engine.headers, timeout=120)
    assert r.status_code == 200, r.text
    if stream:
        events = [json.loads(line[6:]) for line in r.text.splitlines()
                  if line.startswith("data: {")]
        entries = [e for ev in events for c in ev["choices"] if c.get("logprobs") for e in c["logprobs"]["content"]]
    else:
        entries = r.json()["choices"][0]["logprobs"]["content"]
    assert entries
    values = [e["logprob"] for e in entries] + [t["logprob"] for e in entries for t in e["top_logprobs"]]
    assert all(isinstance(v, float | int) and -1e4 <= v <= 0 for v in values)


def test_providers_report_the_engine_that_runs(engine):
    """GET /v1/providers takes each model's provider_type from its running engine, not from its config: the guard
    model's config names meta-reference while the tests inject the scripted engine (conftest.main_graph)."""
    if engine.engine != "meta-reference":
        pytest.skip("the scripted guard is served in the main graph")
    data = httpx.get(f"{engine.smol_url}/v1/providers").json()["data"]
    providers = {p["provider_id"]: p for p in data if p["api"] == "inference"}
    assert providers["scripted"]["provider_type"] == "inline::scripted"
    assert providers["scripted"]["config"]["models"] == [GUARD_SCRIPTED]
    assert providers["meta-reference"]["provider_type"] == "inline::meta-reference"


def test_completion_logprobs_and_echo(smol):
    r = smol.completions.create(model=SMOLLM2, prompt="The sky is", max_tokens=4, logprobs=2, echo=True,
                                temperature=0, extra_body={"ignore_eos": True})
    c = r.choices[0]
    assert c.text.startswith("The sky is")
    assert len(c.logprobs.tokens) == len(c.logprobs.token_logprobs) == 4
    assert all(len(t) <= 2 for t in c.logprobs.top_logprobs)


def test_penalties_and_logit_bias(smol, tokenizer):
    banned = tokenizer.encode(" Paris", add_special_tokens=False)[0]
    r = smol.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=12,
        temperature=0, logit_bias={str(banned): -100}, frequency_penalty=0.5, presence_penalty=0.5)
    assert " Paris" not in r.choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        smol.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "x"}],
                                     logit_bias={"99999999": 1})


def test_stop_string_split_across_tokens_in_stream(smol):
    kw = dict(model=SMOLLM2, prompt="1, 2, 3, 4, 5, 6, 7, 8, 9,", max_tokens=40, temperature=0)
    full = smol.completions.create(**kw).choices[0].text
    stop = full.strip()[2:6]  # a stop string that starts inside a token and ends in another
    assert len(stop) == 4
    streamed = "".join(c.choices[0].text for c in smol.completions.create(stream=True, stop=[stop], **kw))
    assert stop not in streamed
    assert streamed == full[:full.index(stop)]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@pytest.mark.parametrize("model", [TINY, SMOLLM2])
def test_json_schema_output_is_valid(name, model, tiny, smol):
    client = tiny if model == TINY else smol
    schema = SCHEMAS[name]
    for seed in range(3):
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"Give me a {name} example as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
            temperature=1.0, seed=seed, max_tokens=120)
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)


@pytest.mark.parametrize("max_tokens", [30, 41, 57])
def test_json_closes_within_budget(tiny, max_tokens):
    """Random weights at temperature 1.5 run out of budget mid-string: the answer must still parse."""
    schema = SCHEMAS["nested"]
    r = tiny.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "json"}], max_tokens=max_tokens, temperature=1.5, seed=1,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}})
    assert r.usage.completion_tokens <= max_tokens
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_json_object_mode(tiny):
    r = tiny.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "json please"}],
                                     response_format={"type": "json_object"}, max_tokens=40, temperature=1.0, seed=3)
    json.loads(r.choices[0].message.content)


@pytest.mark.parametrize("fmt,param", [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema"),
    ({"type": "yaml"}, "response_format.type"),
])
def test_bad_response_format_400(tiny, fmt, param):
    with pytest.raises(openai.BadRequestError) as e:
        tiny.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "x"}], response_format=fmt)
    assert e.value.body["param"] == param


def test_budget_too_small_for_schema_400(tiny):
    with pytest.raises(openai.BadRequestError, match="too small"):
        tiny.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "x"}], max_tokens=3,
                                     response_format={"type": "json_schema",
                                                      "json_schema": {"name": "n", "schema": SCHEMAS["nested"]}})


@pytest.mark.parametrize("model", [TINY, SMOLLM2])
def test_tool_choice_required_and_named(model, tiny, smol):
    client = tiny if model == TINY else smol
    msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = client.chat.completions.create(model=model, messages=msgs, tools=[WEATHER, TIME], tool_choice="required",
                                       max_tokens=60, temperature=0)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name in ("get_weather", "get_time")
    tool = WEATHER if call.function.name == "get_weather" else TIME
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
    r = client.chat.completions.create(model=model, messages=msgs, tools=[WEATHER, TIME], max_tokens=60,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments), TIME["function"]["parameters"])


def test_streamed_tool_call_deltas(smol):
    stream = smol.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER],
        tool_choice="required", max_tokens=60, temperature=0, stream=True)
    name, args, finish = "", "", None
    for chunk in stream:
        for d in chunk.choices[0].delta.tool_calls or []:
            name += d.function.name or ""
            args += d.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls"
    assert "city" in json.loads(args)


def test_two_turn_tool_conversation(smol):
    msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
    first = smol.chat.completions.create(model=SMOLLM2, messages=msgs, tools=[WEATHER], tool_choice="required",
                                         max_tokens=60, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    msgs += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21, "sky": "sunny"})}]
    second = smol.chat.completions.create(model=SMOLLM2, messages=msgs, tools=[WEATHER], tool_choice="none",
                                          max_tokens=40, temperature=0)
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.content
    assert not second.choices[0].message.tool_calls


def test_bad_tools_400(smol):
    with pytest.raises(openai.BadRequestError) as e:
        smol.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "x"}], tools=[WEATHER],
                                     tool_choice={"type": "function", "function": {"name": "nope"}})
    assert e.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError):
        smol.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "x"}],
                                     tools=[{"type": "function", "function": {"name": "bad name!"}}])


def test_cancelled_stream_frees_capacity(engine):
    body = {"model": SMOLLM2, "prompt": "Once upon a time", "max_tokens": 2000, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{engine.smol_url}/v1/completions", json=body, headers=engine.headers,
                      timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 6:
                break
    deadline = time.time() + 20
    while time.time() < deadline and llm_stats(engine.smol_app, SMOLLM2)["running"]:
        time.sleep(0.2)
    stats = llm_stats(engine.smol_app, SMOLLM2)
    assert stats["running"] == 0 and stats["free_kv_blocks"] == stats["total_kv_blocks"]


def test_queue_bound_answers_503(engine):
    body = {"model": TINY, "prompt": "x", "max_tokens": 600, "ignore_eos": True}
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: httpx.post(f"{engine.tiny_url}/v1/completions", json=body,
                                                   headers=engine.headers, timeout=120), range(10)))
    statuses = [r.status_code for r in codes]
    assert statuses.count(200) >= 4  # 2 running + 2 queued at least
    rejected = [r for r in codes if r.status_code == 503]
    assert rejected, statuses
    assert rejected[0].headers.get("retry-after") == "1"
    assert rejected[0].json()["error"]["code"] == "queue_full"
