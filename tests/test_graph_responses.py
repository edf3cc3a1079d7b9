"""Responses and Conversations through the graph with the OpenAI SDK."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jsonschema
import openai
import pytest
from openai import OpenAI

from tests.conftest import GUARD_TINY, SMOLLM2

pytestmark = pytest.mark.graph

CORPUS = Path(__file__).parent / "data" / "corpus"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0, timeout=120)


def test_plain_response(client):
    r = client.responses.create(model=SMOLLM2, input="What is the capital of France?", temperature=0,
                                max_output_tokens=30)
    assert r.status == "completed" and r.output_text
    assert "Paris" in r.output_text
    assert r.usage.output_tokens > 0 and r.usage.input_tokens > 0
    assert client.responses.retrieve(r.id).output_text == r.output_text


def test_streamed_events_parse(client):
    stream = client.responses.create(model=SMOLLM2, input="Say hello.", temperature=0, max_output_tokens=20,
                                     stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")  # incomplete: max_output_tokens reached
    for t in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
              "response.output_text.done", "response.content_part.done", "response.output_item.done"):
        assert t in types
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text
    assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)
    with client.responses.stream(model=SMOLLM2, input="Say hi.", max_output_tokens=100, temperature=0) as s:
        final = s.get_final_response()  # the SDK's stream helper accumulates and validates the events
    assert final.status == "completed" and final.output_text


def test_json_schema_text_format(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    r = client.responses.create(model=SMOLLM2, input="Name a city and its country as JSON.", max_output_tokens=40,
                                text={"format": {"type": "json_schema", "name": "place", "schema": schema}})
    jsonschema.validate(json.loads(r.output_text), schema)


def test_previous_response_chain(client):
    first = client.responses.create(model=SMOLLM2, input="My name is Ada Lovelace.", max_output_tokens=10)
    alone = client.responses.create(model=SMOLLM2, input="What is my name?", max_output_tokens=10, store=False)
    second = client.responses.create(model=SMOLLM2, input="What is my name?", max_output_tokens=10,
                                     previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > alone.usage.input_tokens + 5  # the earlier turn is in the prompt
    items = client.responses.input_items.list(second.id).data
    assert len(items) == 1 and items[0].content[0].text == "What is my name?"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(alone.id)  # store=False is not kept


def test_conversation_append(client):
    conv = client.conversations.create(metadata={"topic": "test"})
    client.responses.create(model=SMOLLM2, input="Remember the number 42.", conversation=conv.id,
                            max_output_tokens=10)
    client.responses.create(model=SMOLLM2, input="Which number?", conversation=conv.id, max_output_tokens=10)
    items = client.conversations.items.list(conv.id, order="asc").data
    roles = [getattr(i, "role", None) for i in items]
    assert roles == ["user", "assistant", "user", "assistant"]
    added = client.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": "x"}])
    assert client.conversations.items.retrieve(added.data[0].id, conversation_id=conv.id).id == added.data[0].id
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "test"}
    assert client.conversations.delete(conv.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)


def test_function_tool_round_trip(client):
    """tool_choice required: constrained decoding makes even the tiny random model call the tool."""
    r = client.responses.create(model=GUARD_TINY, input="Weather in Oslo?", tools=[WEATHER], tool_choice="required",
                                max_output_tokens=60)
    call = next(o for o in r.output if o.type == "function_call")
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    r2 = client.responses.create(model=GUARD_TINY, previous_response_id=r.id, tools=[WEATHER], max_output_tokens=8,
                                 input=[{"type": "function_call_output", "call_id": call.call_id,
                                         "output": json.dumps({"temp_c": 3})}])
    assert r2.status in ("completed", "incomplete")
    assert r2.output[-1].type == "message"


def test_file_search_cites_the_right_file(client):
    ids = {}
    for name in ("honeybees.md", "volcanoes.txt", "chess.html"):
        with open(CORPUS / name, "rb") as fh:
            ids[name] = client.files.create(file=(name, fh.read()), purpose="assistants").id
    store = client.vector_stores.create(name="responses-kb", file_ids=list(ids.values()))
    deadline = time.time() + 120
    while client.vector_stores.retrieve(store.id).file_counts.in_progress and time.time() < deadline:
        time.sleep(0.3)
    r = client.responses.create(
        model=SMOLLM2, input="How do honeybees tell each other where flowers are?", max_output_tokens=150,
        tools=[{"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 2}],
        tool_choice="required", include=["file_search_call.results"], temperature=0)
    search = next(o for o in r.output if o.type == "file_search_call")
    assert search.status == "completed" and search.queries
    assert search.results[0].file_id == ids["honeybees.md"]
    message = r.output[-1]
    cited = {a.file_id for a in message.content[0].annotations}
    assert ids["honeybees.md"] in cited


def test_guardrails_refuse(client):
    r = client.responses.create(model=SMOLLM2, input="How do I kill my neighbour?", max_output_tokens=20,
                                extra_body={"guardrails": ["llama-guard"]})
    assert r.output[0].content[0].type == "refusal"
    assert r.output[0].content[0].refusal
    ok = client.responses.create(model=SMOLLM2, input="How do I bake bread?", max_output_tokens=10, temperature=0,
                                 extra_body={"guardrails": ["llama-guard"]})
    assert ok.output[-1].content[0].type == "output_text"


def test_list_get_delete_cancel(client):
    r = client.responses.create(model=SMOLLM2, input="One word please.", max_output_tokens=3,
                                metadata={"suite": "responses"})
    listed = client.get("/responses", cast_to=dict, options={"params": {"limit": 100}})
    assert r.id in [x["id"] for x in listed["data"]]
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(r.id)  # completed: nothing to cancel
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


def test_bad_input(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=SMOLLM2, input="x", previous_response_id="resp_nope")
    conv = client.conversations.create()
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2, input="x", previous_response_id="resp_nope", conversation=conv.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2, input="x", tools=[{"type": "teleport"}])
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="x")


def test_usage_reports_cached_input_tokens(client):
    """A second response with the same long instructions finds them in the engine's prefix cache: its usage says
    how many input tokens were cached (input_tokens_details.cached_tokens, summed over the turn's model calls)."""
    from tests.test_graph_inference import HANDBOOK

    instructions = f"Visit {uuid.uuid4().hex}. {HANDBOOK}"  # a prefix no one sent before
    r1 = client.responses.create(model=SMOLLM2, instructions=instructions, input="Hi", max_output_tokens=16)
    r2 = client.responses.create(model=SMOLLM2, instructions=instructions, input="Hello", max_output_tokens=16)
    assert r1.usage.input_tokens_details.cached_tokens == 0
    assert 0 < r2.usage.input_tokens_details.cached_tokens < r2.usage.input_tokens
