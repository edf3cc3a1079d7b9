"""serve/llama_inference.py without Ray: Llama Stack inference requests become the OpenAI requests the LLM
deployments serve, and OpenAI answers and chunks become Llama Stack's."""

from __future__ import annotations

import pytest

from serve import llama_inference as t
from serve.errors import InvalidRequestError
from serve.protocol import llama_inference as ls

TOOL = {"tool_name": "get_weather", "description": "weather",
        "parameters": {"city": {"param_type": "str", "description": "a city"},
                       "days": {"param_type": "int", "required": False, "default": 1},
                       "tags": {"param_type": "list[str]"}}}


def _chat(**kw) -> ls.LlamaChatCompletionRequest:
    return ls.LlamaChatCompletionRequest(**{"model_id": "m", "messages": [{"role": "user", "content": "hi"}], **kw})


def test_sampling_strategies():
    assert t.sampling_fields(None) == {"temperature": 0.0}  # Llama Stack's default is greedy
    top_p = ls.SamplingParams(strategy={"type": "top_p", "temperature": 0.6, "top_p": 0.9}, max_tokens=7,
                              repetition_penalty=1.2, stop=["\n"])
    assert t.sampling_fields(top_p) == {"temperature": 0.6, "top_p": 0.9, "max_tokens": 7,
                                        "repetition_penalty": 1.2, "stop": ["\n"]}
    top_k = ls.SamplingParams(strategy={"type": "top_k", "top_k": 5}, max_tokens=0, repetition_penalty=1.0)
    assert t.sampling_fields(top_k) == {"temperature": 1.0, "top_k": 5}  # 0 tokens: the model's default budget


def test_tools_choice_and_history():
    body = _chat(tools=[TOOL], tool_config={"tool_choice": "get_weather", "system_message_behavior": "replace"},
                 messages=[{"role": "system", "content": "s"},
                           {"role": "user", "content": [{"type": "text", "text": "weather?"}], "context": "ctx"},
                           {"role": "assistant", "content": "", "stop_reason": "end_of_message",
                            "tool_calls": [{"call_id": "c1", "tool_name": "get_weather",
                                            "arguments": {"city": "Paris"}}]},
                           {"role": "tool", "call_id": "c1", "content": "sunny"}])
    req = t.chat_request(body, body.messages)
    fn = req.tools[0]["function"]
    assert fn["parameters"] == {"type": "object", "required": ["city", "tags"], "properties": {
        "city": {"type": "string", "description": "a city"}, "days": {"type": "integer", "default": 1},
        "tags": {"type": "array"}}}
    assert req.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert req.system_message_behavior == "replace"
    user, assistant, tool = req.messages[1:]
    assert user.text() == "weather?\n\nctx"
    assert assistant.tool_calls == [{"id": "c1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "c1", "sunny")
    deprecated = _chat(tools=[TOOL], tool_choice="required")  # the 0.1-style top-level field still counts
    assert t.chat_request(deprecated, deprecated.messages).tool_choice == "required"
    assert t.chat_request(_chat(), _chat().messages).tools is None  # no tools: no tool_choice either


def test_formats_and_refusals():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = t.chat_request(_chat(response_format={"type": "json_schema", "json_schema": schema}), _chat().messages)
    assert req.response_format == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    g = _chat(response_format={"type": "grammar", "bnf": {"root": "item item", "item": '"a" | "b"'}})
    assert t.chat_request(g, g.messages).guided_grammar == 'root ::= item item\nitem ::= "a" | "b"'
    with pytest.raises(InvalidRequestError) as e:
        bad = _chat(response_format={"type": "grammar", "bnf": {"item": '"a"'}})
        t.chat_request(bad, bad.messages)
    assert e.value.param == "response_format.bnf"
    with pytest.raises(InvalidRequestError) as e:
        many = _chat(sampling_params={"stop": list("abcde")})
        t.chat_request(many, many.messages)
    assert e.value.param == "sampling_params.stop"


def test_chat_response_and_stream_events():
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    whole = t.chat_response({"choices": [{"finish_reason": "tool_calls", "message": {
        "content": None, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"x": 1}'}}]}}],
        "usage": usage})
    msg = whole["completion_message"]
    assert msg["stop_reason"] == "end_of_message" and msg["content"] == ""
    assert msg["tool_calls"] == [{"call_id": "c", "tool_name": "f", "arguments": {"x": 1},
                                  "arguments_json": '{"x": 1}'}]
    assert whole["metrics"][2] == {"metric": "total_tokens", "value": 5, "unit": "tokens"}

    ev = t.ChatEvents()
    out = ev.start()
    out += ev.feed({"choices": [{"index": 0, "delta": {"content": "Hel"}, "logprobs": {"content": [
        {"token": "Hel", "logprob": -0.1, "top_logprobs": [{"token": "Hel", "logprob": -0.1}]}]}}]})
    out += ev.feed({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{not json"}}]}}]})
    out += ev.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    out += ev.feed({"choices": [], "usage": usage})
    out += ev.end()
    kinds = [(c["event"]["event_type"], c["event"]["delta"]["type"], c["event"]["delta"].get("parse_status"))
             for c in out]
    assert kinds == [("start", "text", None), ("progress", "text", None), ("progress", "tool_call", "in_progress"),
                     ("progress", "tool_call", "in_progress"), ("progress", "tool_call", "succeeded"),
                     ("progress", "tool_call", "failed"), ("complete", "text", None)]
    assert out[1]["event"]["logprobs"] == [{"logprobs_by_token": {"Hel": -0.1}}]
    assert out[4]["event"]["delta"]["tool_call"]["arguments"] == {"x": 1}
    assert out[5]["event"]["delta"]["tool_call"] == "{not json"
    assert out[-1]["event"]["stop_reason"] == "end_of_message" and out[-1]["metrics"][0]["value"] == 3
    for chunk in out:  # each validates as the client's type
        ls.ChatCompletionResponseStreamChunk.model_validate(chunk)


def test_completion_events_carry_logprobs_with_text():
    ev = t.CompletionEvents()
    lp = {"tokens": ["a", "b"], "token_logprobs": [-1.0, -2.0], "top_logprobs": [{"a": -1.0}, {"b": -2.0}]}
    out = ev.feed({"choices": [{"text": "ab", "logprobs": lp, "finish_reason": None}]})
    out += ev.feed({"choices": [{"text": "", "logprobs": None, "finish_reason": "length"}]})
    out += ev.end()
    assert out[0] == {"delta": "ab", "logprobs": [{"logprobs_by_token": {"a": -1.0}},
                                                  {"logprobs_by_token": {"b": -2.0}}]}
    assert out[-1]["stop_reason"] == "out_of_tokens" and out[-1]["delta"] == ""


def test_embeddings_request_refuses_images():
    body = ls.EmbeddingsRequest(model_id="e", contents=[{"type": "text", "text": "a"}], output_dimension=384)
    req = t.embeddings_request(body)
    assert req.input == ["a"] and req.dimensions == 384
    img = ls.EmbeddingsRequest(model_id="e", contents=[{"type": "image", "image": {"data": "xx"}}])
    with pytest.raises(InvalidRequestError) as e:
        t.embeddings_request(img)
    assert e.value.param == "contents.0"
