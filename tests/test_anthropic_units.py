"""serve/anthropic_messages.py without Ray: Messages requests become the OpenAI chat requests the LLM deployments
serve, and the OpenAI layer's answers and chunks (on the scripted engine) become Anthropic's `Message` and stream
events, checked against the `anthropic` SDK's own types. Also the Anthropic error shape and the x-api-key header."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import TypeAdapter, ValidationError

from deployments.inference.serving import OpenAIServing
from serve import anthropic_messages as t
from serve.auth import Authenticator
from serve.config import parse_config
from serve.errors import APIError, InvalidRequestError, NotFoundError, OverloadedError, error_body, error_shape
from serve.protocol import anthropic_messages as am
from serve.sse import sse_stream
from tests.scripted_engine import ScriptedEngine

MODEL = "scripted-model"
CALL = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
RULES = [{"if_contains": "weather", "reply": CALL}, {"reply": "The keeper climbed the stairs. Then he lit the lamp."}]
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
EVENTS = TypeAdapter(RawMessageStreamEvent)


def _create(**kw) -> am.MessageCreateRequest:
    return am.MessageCreateRequest(**{"model": MODEL, "max_tokens": 64,
                                      "messages": [{"role": "user", "content": "Tell me a story."}], **kw})


@pytest.fixture(scope="module")
def serving(tokenizer) -> OpenAIServing:
    return OpenAIServing(ScriptedEngine(tokenizer, RULES), tokenizer, MODEL)


def _run(serving: OpenAIServing, body: am.MessageCreateRequest) -> tuple[dict, list[dict]]:
    """(the Message, the stream's events) for one request, as the route builds them."""
    whole = t.message(asyncio.run(serving.chat(t.chat_request(body.model_copy(update={"stream": False})))))
    req = t.chat_request(body.model_copy(update={"stream": True}))

    async def events() -> list[dict]:
        ev = t.MessageEvents()
        out = ev.start()
        async for chunk in serving.chat_stream(req):
            out += ev.feed(chunk)
        return out + ev.end()

    return whole, asyncio.run(events())


def _fold(events: list[dict]) -> dict:
    """The message a client builds from the events (text and tool input deltas appended to their blocks)."""
    msg = events[0]["message"]
    partial: dict[int, str] = {}
    for e in events[1:]:
        if e["type"] == "content_block_start":
            msg["content"].append(dict(e["content_block"]))
        elif e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta":
            msg["content"][e["index"]]["text"] += e["delta"]["text"]
        elif e["type"] == "content_block_delta":
            partial[e["index"]] = partial.get(e["index"], "") + e["delta"]["partial_json"]
        elif e["type"] == "message_delta":
            msg.update(e["delta"], usage={**msg["usage"], **e["usage"]})
    for i, text in partial.items():
        msg["content"][i]["input"] = json.loads(text)
    return msg


def _same_message(whole: dict, events: list[dict]) -> None:
    Message.model_validate(whole)
    for e in events:
        if e["type"] != "ping":  # the SDK skips pings by their event name: no type of its own
            EVENTS.validate_python(e)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-2:] == ["message_delta", "message_stop"]
    folded = _fold(events)
    assert folded["id"].startswith("msg_")
    assert _without_ids(folded) == _without_ids(whole)  # two runs: the same answer, each with its own ids


def _without_ids(msg: dict) -> dict:
    return {**msg, "id": None, "content": [{**b, "id": None} if b["type"] == "tool_use" else b for b in msg["content"]]}


def test_text_answer_and_its_stream_agree(serving):
    whole, events = _run(serving, _create(system=[{"type": "text", "text": "You tell stories."}]))
    assert whole["content"] == [{"type": "text", "text": RULES[-1]["reply"]}]
    assert whole["stop_reason"] == "end_turn" and whole["stop_sequence"] is None
    assert whole["usage"]["input_tokens"] > 0 and whole["usage"]["output_tokens"] > 0
    assert whole["usage"]["cache_read_input_tokens"] == 0 and whole["usage"]["cache_creation_input_tokens"] == 0
    _same_message(whole, events)
    assert events[0]["message"]["usage"]["input_tokens"] == whole["usage"]["input_tokens"]  # known at the start


def test_stop_sequence_is_named(serving):
    whole, events = _run(serving, _create(stop_sequences=["lamp", "stairs"]))
    assert whole["content"][0]["text"] == "The keeper climbed the "
    assert (whole["stop_reason"], whole["stop_sequence"]) == ("stop_sequence", "stairs")
    _same_message(whole, events)


def test_max_tokens_stop_reason(serving):
    whole, events = _run(serving, _create(max_tokens=3))
    assert whole["stop_reason"] == "max_tokens" and whole["usage"]["output_tokens"] == 3
    _same_message(whole, events)


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_tool_use_blocks(serving, choice):
    body = _create(messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=[WEATHER],
                   tool_choice=choice)
    whole, events = _run(serving, body)
    (block,) = whole["content"]
    assert block["type"] == "tool_use" and block["name"] == "get_weather" and block["id"].startswith("toolu_")
    assert whole["stop_reason"] == "tool_use"
    if choice["type"] == "auto":
        assert block["input"] == {"city": "Paris"}  # the scripted call, parsed
    else:  # the grammar's compact JSON refuses the script's spaces, and closes the call by the shortest way
        jsonschema.validate(block["input"], WEATHER["input_schema"])
    _same_message(whole, events)
    (start,) = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert start["input"] == {} and start["name"] == "get_weather"  # the input arrives as input_json_delta


def test_forced_tool_input_follows_the_schema(serving):
    """tool_choice any on a prompt whose scripted reply is prose: the grammar makes it a call with a valid input."""
    whole, _ = _run(serving, _create(tools=[WEATHER], tool_choice={"type": "any"}))
    (block,) = whole["content"]
    assert block["type"] == "tool_use" and isinstance(block["input"]["city"], str)


def test_output_format_follows_the_schema(serving):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    body = _create(output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"})
    assert t.chat_request(body).response_format == {"type": "json_schema",
                                                    "json_schema": {"name": "output", "schema": schema}}
    whole, events = _run(serving, body)  # the scripted reply is prose: the grammar makes it the JSON asked for
    jsonschema.validate(json.loads(whole["content"][0]["text"]), schema)
    _same_message(whole, events)


def test_history_translation():
    body = _create(system="Be brief.", temperature=0.5, top_p=0.9, top_k=20, metadata={"user_id": "u1"},
                   stop_sequences=["\n"], tools=[WEATHER],
                   tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
                   messages=[{"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                             {"role": "assistant", "content": [
                                 {"type": "text", "text": "Let me look."},
                                 {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                  "input": {"city": "Oslo"}}]},
                             {"role": "user", "content": [
                                 {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                                 {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                  "content": [{"type": "text", "text": "timeout"}]},
                                 {"type": "text", "text": "And tomorrow?"}]}])
    req = t.chat_request(body)
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool", "tool", "user"]
    system, _, assistant, ok, failed, user = req.messages
    assert system.text() == "Be brief." and user.text() == "And tomorrow?"
    assert assistant.content == "Let me look." and assistant.tool_calls == [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]
    assert (ok.tool_call_id, ok.content, failed.content) == ("toolu_1", "sunny", "Error: timeout")
    assert req.tools[0]["function"]["parameters"] == WEATHER["input_schema"]
    assert req.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert req.parallel_tool_calls is False
    assert (req.temperature, req.top_p, req.top_k, req.stop, req.user, req.max_tokens) == (
        0.5, 0.9, 20, ["\n"], "u1", 64)
    assert req.stream_options is None
    streamed = t.chat_request(_create(stream=True))
    assert streamed.stream_options.include_usage and streamed.stream_options.continuous_usage_stats


@pytest.mark.parametrize(("choice", "expected"), [(None, "auto"), ({"type": "auto"}, "auto"),
                                                  ({"type": "any"}, "required"), ({"type": "none"}, "none")])
def test_tool_choices(choice, expected):
    assert t.chat_request(_create(tools=[WEATHER], tool_choice=choice)).tool_choice == expected
    bare = t.chat_request(_create(tool_choice=choice))
    assert bare.tools is None and bare.tool_choice == (None if expected in ("auto", "none") else expected)


@pytest.mark.parametrize(("messages", "param"), [
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure"}], "messages.1"),
    ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}],
     "messages.0.content.0.tool_use_id"),
    ([{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}],
     "messages.0.content.0"),
    ([{"role": "system", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]},
      {"role": "user", "content": "hi"}], "messages.0.content"),
])
def test_refused_conversations(messages, param):
    with pytest.raises(InvalidRequestError) as err:
        t.chat_request(_create(messages=messages))
    assert err.value.param == param


def test_refused_fields():
    with pytest.raises(InvalidRequestError) as err:
        t.chat_request(_create(stop_sequences=list("abcde")))
    assert err.value.param == "stop_sequences"  # the OpenAI field's limit, named as the client sent it
    for bad in ({"max_tokens": None}, {"max_tokens": 0}, {"temperature": 1.5},
                {"tools": [{**WEATHER, "input_schema": {"type": "string"}}]},
                {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
                {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}):
        with pytest.raises(ValidationError):
            _create(**bad)


def test_param_names():
    assert t.anthropic_param("stop") == "stop_sequences"
    assert t.anthropic_param("tools.2.function.parameters.properties") == "tools.2.input_schema.properties"
    assert t.anthropic_param("tools.0.function.name") == "tools.0.name"
    assert t.anthropic_param("messages.3.content") == "messages"  # OpenAI's message indexes are not the client's
    assert t.anthropic_param("max_tokens") == "max_tokens"
    assert t.anthropic_param("response_format.json_schema.schema") == "output_config.format.schema"


def test_count_tokens_is_the_chat_prompt(serving):
    body = _create(tools=[WEATHER], system="Be brief.")
    counted = asyncio.run(serving.count_tokens(t.prompt_request(am.MessageCountTokensRequest(
        **body.model_dump(include={"model", "messages", "system", "tools", "tool_choice"})))))
    MessageTokensCount.model_validate({"input_tokens": counted})
    assert counted == t.message(asyncio.run(serving.chat(t.chat_request(body))))["usage"]["input_tokens"]


def test_error_shape_by_route():
    assert error_shape({"path": "/v1/messages"}) == "anthropic"
    assert error_shape({"path": "/secure/v1/messages/count_tokens", "root_path": "/secure"}) == "anthropic"
    for path in ("/v1/chat/completions", "/v1/messagesx", "/v1/openai/v1/models"):
        assert error_shape({"path": path}) == "openai"
    assert error_body(NotFoundError("no such thing", param="model"), "anthropic") == (
        404, {"type": "error", "error": {"type": "not_found_error", "message": "model: no such thing"}})
    assert error_body(NotFoundError("model 'x' not found", param="model"), "anthropic")[1]["error"]["message"] == (
        "model 'x' not found")  # a message that names its field already is kept as it is
    assert error_body(OverloadedError("busy"), "anthropic")[0] == 529  # Anthropic's status for overloaded
    assert error_body(APIError("internal server error"), "anthropic")[1]["error"]["type"] == "api_error"
    status, body = error_body(NotFoundError("gone", param="model"))
    assert status == 404 and body["error"]["param"] == "model"  # everywhere else: the OpenAI envelope


def test_mid_stream_failure_is_an_anthropic_error_event():
    async def failing():
        yield [{"type": "ping"}]
        raise OverloadedError("the engine went away")

    async def run() -> list[str]:
        return [e async for e in sse_stream({"type": "message_start"}, failing(), False, "anthropic")]

    first, ping, error = asyncio.run(run())
    assert first.startswith("event: message_start\ndata: ") and ping.startswith("event: ping\n")
    name, data = error.strip().split("\n")
    assert name == "event: error"
    assert json.loads(data.removeprefix("data: ")) == {
        "type": "error", "error": {"type": "overloaded_error", "message": "the engine went away"}}


def test_x_api_key_header():
    auth = Authenticator(parse_config({"server": {"api_keys": ["k1"]}, "models": [{"model_id": "m", "source": "m"}]}))
    assert auth.authenticate(None, "k1") is auth.default
    assert auth.authenticate(None, "wrong") is None and auth.authenticate(None, None) is None
    assert auth.authenticate("Bearer k1", "wrong") is auth.default  # a bearer key is the one checked
    assert auth.authenticate("Bearer wrong", "k1") is None
