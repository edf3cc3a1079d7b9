"""Responses features through the graph with the OpenAI SDK: prompt_cache_key, truncation, include (logprobs),
parallel_tool_calls, input token counts and compaction (POST /responses/compact, context_management)."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.conftest import GUARD_SCRIPTED, PARALLEL_ASK, SMOLLM2

pytestmark = pytest.mark.graph

CONTEXT = 2048  # SmolLM2's max_model_len in the test graph
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def openai_prefix(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1/openai/v1", api_key="none", max_retries=0, timeout=300)


def notes(n: int, topic: str) -> list[dict]:
    """n user messages of ~30 tokens each about `topic`: a long history in a few lines."""
    return [{"role": "user", "content": f"Note {i} on {topic}: the committee reviewed budget line {i * 7} and agreed "
                                        f"to revisit the {topic} schedule at the meeting next week."}
            for i in range(n)]


def count(client: OpenAI, **body) -> int:
    got = client.post("/responses/input_tokens", body=body, cast_to=dict)
    assert got["object"] == "response.input_tokens"
    return got["input_tokens"]


def as_input(items) -> list[dict]:
    return [i.model_dump(exclude_none=True) for i in items]


@pytest.fixture(scope="module")
def long_chain(client) -> str:
    """A stored response whose history is ~1500 tokens: with ~700 more it no longer fits SmolLM2's context."""
    r = client.responses.create(model=SMOLLM2, input=notes(45, "harbour"), max_output_tokens=4, temperature=0)
    assert r.usage.input_tokens > 1300
    return r.id


# ---- prompt_cache_key -------------------------------------------------------------------------------------------

def test_prompt_cache_key_is_echoed(client, openai_prefix):
    r = openai_prefix.responses.create(model=SMOLLM2, input="Hi.", max_output_tokens=3, prompt_cache_key="user-42")
    assert r.prompt_cache_key == "user-42"
    assert client.responses.retrieve(r.id).prompt_cache_key == "user-42"
    assert client.responses.create(model=SMOLLM2, input="Hi.", max_output_tokens=3).prompt_cache_key is None
    chat = client.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "Hi."}], max_tokens=3,
                                          prompt_cache_key="user-42")
    assert chat.choices[0].message.content is not None


# ---- input tokens ------------------------------------------------------------------------------------------------

def test_input_tokens_equal_the_usage_of_the_same_create(client, openai_prefix):
    body = {"model": SMOLLM2, "input": "What is the capital of France?", "instructions": "Answer in one word.",
            "max_output_tokens": 5, "temperature": 0}
    r = client.responses.create(**body)
    assert count(client, **body) == count(openai_prefix, **body) == r.usage.input_tokens
    sdk = client.responses.input_tokens.count(model=SMOLLM2, input=body["input"], instructions=body["instructions"])
    assert sdk.input_tokens == r.usage.input_tokens and sdk.object == "response.input_tokens"
    chained = {**body, "input": "And of Italy?", "previous_response_id": r.id}
    r2 = client.responses.create(**chained)
    assert count(client, **chained) == r2.usage.input_tokens > r.usage.input_tokens
    assert count(client, **body, tools=[WEATHER]) > r.usage.input_tokens  # tool definitions are read too


def test_input_tokens_bad_input(client):
    with pytest.raises(openai.NotFoundError):
        count(client, model="nope", input="x")
    with pytest.raises(openai.NotFoundError):
        count(client, model=SMOLLM2, input="x", previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError):
        count(client, model=SMOLLM2, input=[{"type": "teleport"}])


# ---- truncation --------------------------------------------------------------------------------------------------

def test_truncation_disabled_refuses_a_history_past_the_context(client, long_chain):
    more = notes(20, "orchard") + [{"role": "user", "content": "Which topic came last?"}]
    newest = client.get("/responses", cast_to=dict, options={"params": {"limit": 1}})["data"][0]["id"]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=SMOLLM2, previous_response_id=long_chain, input=more, max_output_tokens=8)
    assert err.value.code == "context_length_exceeded"
    assert client.get("/responses", cast_to=dict, options={"params": {"limit": 1}})["data"][0]["id"] == newest
    events = list(client.responses.create(model=SMOLLM2, previous_response_id=long_chain, input=more,
                                          max_output_tokens=8, stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.error.code == "context_length_exceeded"


def test_truncation_auto_drops_the_oldest_items(client, long_chain):
    more = notes(20, "orchard") + [{"role": "user", "content": "Which topic came last?"}]
    body = {"model": SMOLLM2, "previous_response_id": long_chain, "input": more, "max_output_tokens": 8,
            "truncation": "auto", "temperature": 0}
    r = client.responses.create(**body)
    assert r.status in ("completed", "incomplete") and r.truncation == "auto"
    assert 1000 < r.usage.input_tokens <= CONTEXT - 8  # it fits, and kept much of the history
    assert count(client, **body) == r.usage.input_tokens
    items = client.responses.input_items.list(r.id, limit=100).data
    assert len(items) == 21  # the stored input is whole: truncation only shapes what the model reads


# ---- include and logprobs ------------------------------------------------------------------------------------------

def test_include_output_text_logprobs(client):
    r = client.responses.create(model=SMOLLM2, input="Say hello.", max_output_tokens=6, temperature=0, top_logprobs=2,
                                include=["message.output_text.logprobs", "reasoning.encrypted_content"])
    part = r.output[-1].content[0]
    assert part.logprobs and len(part.logprobs) <= r.usage.output_tokens
    assert all(lp.logprob <= 0 and len(lp.top_logprobs) == 2 for lp in part.logprobs)
    assert "".join(lp.token for lp in part.logprobs).startswith(part.text)  # one logprob per token of the text
    assert [o.type for o in r.output] == ["message"] and r.top_logprobs == 2  # no reasoning items exist here
    plain = client.responses.create(model=SMOLLM2, input="Say hello.", max_output_tokens=6, temperature=0)
    assert plain.output[-1].content[0].logprobs == []
    events = list(client.responses.create(model=SMOLLM2, input="Say hello.", max_output_tokens=6, temperature=0,
                                          include=["message.output_text.logprobs"], stream=True))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert sum(len(e.logprobs) for e in deltas) == len(events[-1].response.output[-1].content[0].logprobs) > 0


def test_unknown_include_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="include"):
        client.responses.create(model=SMOLLM2, input="x", include=["message.input_image.image_url"])
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2, input="x", include=["no.such.thing"])


# ---- parallel tool calls -------------------------------------------------------------------------------------------

def test_parallel_tool_calls(client):
    """The scripted model answers PARALLEL_ASK with two calls; parallel_tool_calls=false keeps one."""
    both = client.responses.create(model=GUARD_SCRIPTED, input=PARALLEL_ASK, tools=[WEATHER], max_output_tokens=80)
    assert [o.arguments for o in both.output if o.type == "function_call"] == ['{"city": "Oslo"}',
                                                                              '{"city": "Bergen"}']
    one = client.responses.create(model=GUARD_SCRIPTED, input=PARALLEL_ASK, tools=[WEATHER], max_output_tokens=80,
                                  parallel_tool_calls=False)
    assert [o.arguments for o in one.output if o.type == "function_call"] == ['{"city": "Oslo"}']
    assert one.parallel_tool_calls is False
    chat = client.chat.completions.create(model=GUARD_SCRIPTED, messages=[{"role": "user", "content": PARALLEL_ASK}],
                                          tools=[{"type": "function", "function": {
                                              "name": "get_weather", "parameters": WEATHER["parameters"]}}],
                                          parallel_tool_calls=False, max_tokens=80)
    assert len(chat.choices[0].message.tool_calls) == 1


# ---- compaction ----------------------------------------------------------------------------------------------------

def test_compact_then_continue_with_the_compaction_item(client, openai_prefix):
    first = client.responses.create(model=SMOLLM2, input=[
        {"role": "user", "content": "My name is Ada Lovelace and I write programs for the Analytical Engine."},
        *notes(20, "engine")], max_output_tokens=10, temperature=0)  # ~700 tokens: more than a summary
    compacted = openai_prefix.responses.compact(model=SMOLLM2, previous_response_id=first.id)
    assert compacted.object == "response.compaction" and compacted.usage.output_tokens > 0
    *users, item = compacted.output
    assert item.type == "compaction" and item.encrypted_content.strip() and item.id
    assert len(users) == 21 and all(u.role == "user" for u in users)
    question = {"role": "user", "content": "What is my name?"}
    full = count(client, model=SMOLLM2, previous_response_id=first.id, input=[question])
    r = client.responses.create(model=SMOLLM2, input=[*as_input(compacted.output), question], max_output_tokens=10,
                                temperature=0)
    # the model read the compaction item and the question, not the history it stands for
    assert r.usage.input_tokens == count(client, model=SMOLLM2, input=[as_input([item])[0], question]) < full
    stored = client.responses.input_items.list(r.id, order="asc", limit=100).data
    assert [s.type for s in stored][-2:] == ["compaction", "message"]
    assert stored[-2].id == item.id and stored[-2].model_dump()["encrypted_content"] == item.encrypted_content


def test_compaction_needs_history(client):
    with pytest.raises(openai.BadRequestError):
        client.responses.compact(model=SMOLLM2)
    with pytest.raises(openai.NotFoundError):
        client.responses.compact(model=SMOLLM2, previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError, match="encrypted_content"):
        client.responses.create(model=SMOLLM2, input=[{"type": "compaction", "encrypted_content": ""}])


def test_context_management_compacts_past_a_small_context(client, long_chain):
    """A history past the model's context (the truncation tests above refuse it) is compacted, and the chain goes
    on from the compaction item."""
    more = notes(20, "orchard") + [{"role": "user", "content": "Which topic came last?"}]
    r = client.responses.create(model=SMOLLM2, previous_response_id=long_chain, input=more, max_output_tokens=8,
                                temperature=0, context_management=[{"type": "compaction", "compact_threshold": 800}])
    assert r.status in ("completed", "incomplete")
    item, answer = r.output
    assert item.type == "compaction" and item.encrypted_content.strip() and answer.type == "message"
    assert [o.type for o in client.responses.retrieve(r.id).output] == ["compaction", "message"]  # stored
    nxt = client.responses.create(model=SMOLLM2, previous_response_id=r.id, input="Thanks. Anything else?",
                                  max_output_tokens=5, temperature=0)
    expected = count(client, model=SMOLLM2, input=[*as_input([item, answer]),
                                                   {"role": "user", "content": "Thanks. Anything else?"}])
    assert nxt.usage.input_tokens == expected < 800
    below = client.responses.create(model=SMOLLM2, input="Hi.", max_output_tokens=3,
                                    context_management=[{"type": "compaction", "compact_threshold": 5000}])
    assert [o.type for o in below.output] == ["message"]
