"""The OpenAI layer (deployments/inference/serving.py) without Ray: on the scripted engine, where the model's output
is fixed and the layer's work (stop strings, n, logprobs, tool calls, constraints, chunks) is what varies, and on
the tiny random Llama on the real meta-reference engine where the sampler's logprobs matter."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from deployments.inference.service import LLMService
from deployments.inference.serving import OpenAIServing
from serve.config import MetaReferenceEngineConfig as EngineConfig
from serve.config import ModelConfig
from serve.protocol.openai_chat import ChatCompletionRequest, CompletionRequest
from tests.scripted_engine import ScriptedEngine, ScriptedEngineFactory

MODEL = "scripted-model"
CALL = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
RULES = [{"if_contains": "weather", "reply": CALL},
         {"if_contains": "person", "reply": 'Sure! {"name": "Ada", "age": 36}'},
         {"reply": "The keeper climbed the stairs. Then he lit the lamp."}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture(scope="module")
def serving(tokenizer) -> OpenAIServing:
    return OpenAIServing(ScriptedEngine(tokenizer, RULES), tokenizer, MODEL)


def _chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model=MODEL, **{"messages": [{"role": "user", "content": "Tell me a story."}], **kw})


async def _drain(stream) -> list[dict]:
    return [c async for c in stream]


def _both(serving: OpenAIServing, req) -> tuple[dict, list[dict]]:
    """(the whole response, the streamed chunks) for one request."""
    whole = serving.chat if isinstance(req, ChatCompletionRequest) else serving.completion
    stream = serving.chat_stream if isinstance(req, ChatCompletionRequest) else serving.completion_stream
    return asyncio.run(whole(req)), asyncio.run(_drain(stream(req)))


def _streamed_text(chunks: list[dict], index: int = 0) -> str:
    return "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"] if ch["index"] == index)


def test_stop_string_cuts_the_answer_in_both_shapes(serving):
    whole, chunks = _both(serving, _chat(stop=["stairs"]))
    assert whole["choices"][0]["message"]["content"] == "The keeper climbed the "
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert _streamed_text(chunks) == "The keeper climbed the "
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == ["stop"]


def test_stop_string_is_named_in_stop_reason(serving):
    """vLLM's extension: a choice that ended on a stop string names it; one that ended otherwise has no stop_reason."""
    whole, chunks = _both(serving, _chat(stop=["lamp", "stairs"]))
    assert whole["choices"][0]["stop_reason"] == "stairs"  # the one that came first in the text
    assert [ch.get("stop_reason") for c in chunks for ch in c["choices"] if ch["finish_reason"]] == ["stairs"]
    plain = asyncio.run(serving.chat(_chat(stop=["nowhere"])))
    assert plain["choices"][0]["finish_reason"] == "stop" and "stop_reason" not in plain["choices"][0]


def test_continuous_usage_stats_and_count_tokens(serving):
    req = _chat(stop=["lamp"], stream_options={"include_usage": True, "continuous_usage_stats": True})
    whole, chunks = _both(serving, req)
    prompt = whole["usage"]["prompt_tokens"]
    assert asyncio.run(serving.count_tokens(req)) == prompt  # exactly the prompt chat prefilled
    used = [c["usage"]["completion_tokens"] for c in chunks]
    assert all(c["usage"]["prompt_tokens"] == prompt for c in chunks)
    assert used[0] == 0 and used == sorted(used) and chunks[-1]["usage"] == whole["usage"]
    plain = asyncio.run(_drain(serving.chat_stream(_chat(stream_options={"include_usage": True}))))
    assert [c["usage"] for c in plain[:-1]] == [None] * (len(plain) - 1)  # OpenAI's default: usage only at the end
    with_tools = _chat(tools=[WEATHER])
    assert asyncio.run(serving.count_tokens(with_tools)) > asyncio.run(serving.count_tokens(_chat()))


def test_n_choices_and_usage(serving, tokenizer):
    reply = RULES[-1]["reply"]
    n_reply = len(tokenizer.encode(reply, add_special_tokens=False))
    whole, chunks = _both(serving, _chat(n=3, stream_options={"include_usage": True}))
    assert [c["index"] for c in whole["choices"]] == [0, 1, 2]
    assert all(c["message"]["content"] == reply for c in whole["choices"])
    assert whole["usage"]["completion_tokens"] == 3 * n_reply
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert {_streamed_text(chunks, i) for i in range(3)} == {reply}


def test_max_tokens_gives_length(serving, tokenizer):
    whole = asyncio.run(serving.chat(_chat(max_tokens=3)))
    assert whole["choices"][0]["finish_reason"] == "length" and whole["usage"]["completion_tokens"] == 3


def test_chat_logprobs_cover_every_token(serving):
    whole, chunks = _both(serving, _chat(logprobs=True, top_logprobs=1, max_tokens=5))
    content = whole["choices"][0]["logprobs"]["content"]
    assert len(content) == whole["usage"]["completion_tokens"] == 5
    assert all(e["logprob"] == -0.5 and len(e["top_logprobs"]) == 1 for e in content)
    assert "".join(e["token"] for e in content) == whole["choices"][0]["message"]["content"]
    streamed = [e for c in chunks for ch in c["choices"] if ch["logprobs"] for e in ch["logprobs"]["content"]]
    assert streamed == content


def test_completion_logprob_offsets_run_across_chunks(serving):
    req = CompletionRequest(model=MODEL, prompt="A story:", max_tokens=6, logprobs=1, echo=True)
    whole, chunks = _both(serving, req)
    choice = whole["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"].startswith("A story:")
    # every token's offset points at its own text in the echoed answer, streamed or not
    assert [choice["text"][o:o + len(t)] for o, t in zip(lp["text_offset"], lp["tokens"], strict=True)] == lp["tokens"]
    offsets = [o for c in chunks for ch in c["choices"] if ch["logprobs"] for o in ch["logprobs"]["text_offset"]]
    assert offsets == lp["text_offset"]


def test_tool_call_auto_parsed_in_both_shapes(serving):
    req = _chat(messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=[WEATHER])
    whole, chunks = _both(serving, req)
    (call,) = whole["choices"][0]["message"]["tool_calls"]
    assert whole["choices"][0]["message"]["content"] is None and whole["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}
    deltas = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"].startswith("call_")
    assert "".join(d["function"]["arguments"] for d in deltas) == call["function"]["arguments"]


def test_tool_choice_none_keeps_the_text(serving):
    req = _chat(messages=[{"role": "user", "content": "What is the weather?"}], tools=[WEATHER], tool_choice="none")
    whole = asyncio.run(serving.chat(req))
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": CALL, "refusal": None}


def test_forced_tool_call_goes_through_the_grammar(serving):
    """tool_choice required on a prompt whose scripted reply is prose: the grammar's bitmask refuses the prose and
    the constraint's closing path makes a call of the one tool."""
    whole = asyncio.run(serving.chat(_chat(tools=[WEATHER], tool_choice="required", max_tokens=64)))
    (call,) = whole["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])


@pytest.mark.parametrize("prompt", ["Describe a person.", "Tell me a story."])
def test_json_schema_output_follows_the_schema(serving, prompt):
    """The scripted reply goes through the constraint's token bitmask: where it fits the schema it is kept (the
    person), where it does not the constraint closes the structure its own way (the story)."""
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    whole, chunks = _both(serving, _chat(messages=[{"role": "user", "content": prompt}], response_format=fmt,
                                         max_tokens=48))
    text = whole["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(text), PERSON)
    assert _streamed_text(chunks) == text
    assert whole["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("req", [
    _chat(), _chat(n=2, stop=["lamp"]), _chat(logprobs=True, top_logprobs=1, max_tokens=4),
    _chat(messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER]),
    _chat(response_format={"type": "json_object"}, max_tokens=32),
    CompletionRequest(model=MODEL, prompt=["One", "Two"], n=2, max_tokens=5, logprobs=2, echo=True),
], ids=["plain", "n-stop", "logprobs", "tools", "json", "completions"])
def test_streamed_and_whole_answers_agree(serving, req):
    """The whole answer is the stream's fold: the same text, calls, logprobs, reasons and usage (ids aside)."""
    req = type(req).model_validate({**req.model_dump(exclude_unset=True), "stream_options": {"include_usage": True}})
    whole, chunks = _both(serving, req)
    from deployments.inference.stream_fold import fold_chat, fold_completion

    fold = fold_chat if isinstance(req, ChatCompletionRequest) else fold_completion
    logprobs = bool(req.logprobs) if isinstance(req, ChatCompletionRequest) else req.logprobs is not None
    refolded = fold(chunks, logprobs)

    assert _comparable(refolded) == _comparable(whole)


def _comparable(r: dict) -> str:
    """A response without what differs between two runs of one request: ids, creation time, tool call ids."""
    r = json.loads(json.dumps(r))
    for c in r["choices"]:
        for tc in (c.get("message") or {}).get("tool_calls") or []:
            tc["id"] = "call"
    return json.dumps({k: v for k, v in r.items() if k not in ("id", "created")}, sort_keys=True)


def test_service_reports_the_engine_that_runs(tokenizer, tmp_path):
    """model_info's provider_type is the engine's own (GET /v1/providers shows it), whatever the config names."""
    model = ModelConfig(model_id=MODEL, source="unused", engine=EngineConfig(max_num_seqs=3))
    service = LLMService(model, ScriptedEngineFactory(RULES)(tmp_path, tokenizer, model), tokenizer)
    info = asyncio.run(service.model_info())
    assert info["provider_type"] == "inline::scripted" and info["engine"] == "scripted"
    assert info["max_num_seqs"] == 3 and info["context_length"] == 4096
    whole = asyncio.run(service.chat(_chat(max_tokens=2)))
    assert whole["usage"]["completion_tokens"] == 2 and asyncio.run(service.stats()).generated_tokens >= 2


# ---- the real sampler: logprobs under constrained decoding ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_serving(tiny_model_dir):
    from transformers import AutoTokenizer

    from deployments.inference.meta_reference.engine import MetaReferenceEngine

    engine = MetaReferenceEngine.from_checkpoint(tiny_model_dir, EngineConfig(max_num_seqs=2, kv_cache_tokens=2048))
    yield OpenAIServing(engine, AutoTokenizer.from_pretrained(tiny_model_dir), "tiny")
    engine.shutdown()


@pytest.mark.parametrize("extra", [
    {"tools": [WEATHER], "tool_choice": "required"},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}},
], ids=["tool_choice-required", "json_schema"])
def test_constrained_logprobs_are_finite_json(tiny_serving, extra):
    """Masked tokens' -inf log-probabilities never reach the answer: it encodes as strict JSON (the 500 was
    "Out of range float values are not JSON compliant"), and top logprobs hold only tokens the grammar allowed."""
    req = _chat(logprobs=True, top_logprobs=5, max_tokens=40, temperature=1.0, seed=3, **extra)

    async def both():  # one event loop: the engine's step loop lives on it
        return await tiny_serving.chat(req), await _drain(tiny_serving.chat_stream(req))

    whole, chunks = asyncio.run(both())
    json.dumps(whole, allow_nan=False)
    json.dumps(chunks, allow_nan=False)
    content = whole["choices"][0]["logprobs"]["content"]
    assert content and all(e["logprob"] <= 0 and len(e["top_logprobs"]) <= 5 for e in content)
    assert any(len(e["top_logprobs"]) < 5 for e in content)  # where the grammar allows fewer than 5 tokens


def test_sampler_leaves_masked_tokens_out_of_top_logprobs():
    import torch

    from deployments.inference.sampling import SamplingParams, sample

    logits = torch.full((1, 10), float("-inf"))
    logits[0, 3], logits[0, 7] = 1.0, 0.0
    params = [SamplingParams(temperature=0.0, logprobs=5)]
    (tok,) = sample(logits, params, [params[0].make_generator()])
    assert tok.token_id == 3 and [i for i, _ in tok.top_logprobs] == [3, 7]
    assert all(lp > float("-inf") for _, lp in tok.top_logprobs)


def test_unconstrained_script_ignores_the_grammar(tokenizer):
    """`constrained=False` (the test guard): the script is answered as is, whatever format was asked for."""
    serving = OpenAIServing(ScriptedEngine(tokenizer, RULES, constrained=False), tokenizer, MODEL)
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    whole = asyncio.run(serving.chat(_chat(response_format=fmt, max_tokens=48)))
    assert whole["choices"][0]["message"]["content"] == RULES[-1]["reply"]


def test_default_max_tokens_bounds_requests_that_name_none(tokenizer):
    capped = OpenAIServing(ScriptedEngine(tokenizer, RULES), tokenizer, MODEL, default_max_tokens=4)
    whole = asyncio.run(capped.chat(_chat()))
    assert whole["choices"][0]["finish_reason"] == "length" and whole["usage"]["completion_tokens"] == 4
    named = asyncio.run(capped.chat(_chat(max_tokens=6)))  # a request's own limit wins
    assert named["usage"]["completion_tokens"] == 6


def test_system_message_behavior_places_the_tool_definitions():
    from deployments.inference.serving import _with_system

    system = [{"role": "system", "content": "Tools: {{function_definitions}}. Be brief."}]
    appended = _with_system(system, "DEFS")[0]["content"]
    assert appended == "Tools: {{function_definitions}}. Be brief.\n\nDEFS"
    assert _with_system(system, "DEFS", "replace")[0]["content"] == "Tools: DEFS. Be brief."
    own = [{"role": "system", "content": "No tools here."}]
    assert _with_system(own, "DEFS", "replace")[0]["content"] == "No tools here."
    assert _with_system([], "DEFS", "replace") == [{"role": "system", "content": "DEFS"}]


def test_completion_follows_response_format_in_both_shapes(serving):
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    req = CompletionRequest(model=MODEL, prompt="A person:", max_tokens=40, response_format=fmt)
    whole, chunks = _both(serving, req)
    text = whole["choices"][0]["text"]
    jsonschema.validate(json.loads(text), PERSON)
    assert "".join(ch["text"] for c in chunks for ch in c["choices"]) == text
    with pytest.raises(Exception, match="too small"):
        asyncio.run(serving.completion(CompletionRequest(model=MODEL, prompt="A person:", max_tokens=2,
                                                         response_format=fmt)))
