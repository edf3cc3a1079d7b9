"""Fitting a Responses run to the model's context without Ray: what may be dropped, truncation, compaction,
input token counts, logprobs and parallel tool calls, over a fake LLM handle whose tokens are words."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from deployments.agents.compaction import compact
from deployments.agents.context_window import fewest_to_drop, split_context, transcript, units
from deployments.agents.hosted_tools import HostedTools
from deployments.agents.items import SUMMARY_HEADER, compaction_item, normalize_input, to_chat_messages
from deployments.agents.model_call import ModelOutput
from deployments.agents.orchestrator import ResponseRun
from deployments.agents.response_events import ResponseEvents
from deployments.inference.tool_calls import ToolSpec
from deployments.inference.tool_stream import ToolCallStream
from serve.errors import InvalidRequestError
from serve.ids import new_id
from serve.protocol.responses import CreateResponseRequest
from tests.test_response_run_units import FakeLLM, _Method, collect


def words(req) -> int:
    return sum(len(str(m.content or "").split()) for m in req.messages)  # as FakeLLM's usage counts a prompt


class CountingLLM(FakeLLM):
    """FakeLLM with a context length, `count_tokens` and a non-streamed `chat` that writes the given summaries."""

    def __init__(self, replies, context_length=10_000, summaries=()):
        super().__init__(replies)
        self.context_length = context_length
        self.summaries = list(summaries)
        self.summary_requests = []
        self.counts = 0
        self.model_info = _Method(self._info)
        self.count_tokens = _Method(self._count)
        self.chat = _Method(self._chat)

    async def _info(self):
        return {"context_length": self.context_length}

    async def _count(self, req):
        self.counts += 1
        return words(req)

    async def _chat(self, req):
        self.summary_requests.append(req)
        text = self.summaries.pop(0)
        return {"choices": [{"message": {"content": text}}],
                "usage": {"prompt_tokens": words(req), "completion_tokens": len(text.split())}}


def user(text: str) -> dict:
    return normalize_input([{"role": "user", "content": text}])[0]


def assistant(text: str) -> dict:
    return normalize_input([{"role": "assistant", "content": text}])[0]


def history(turns: int, size: int = 10) -> list[dict]:
    """`turns` user/assistant pairs of `size` words each, numbered so a test can see which were kept."""
    items = []
    for t in range(turns):
        items += [user(" ".join([f"q{t}"] * size)), assistant(" ".join([f"a{t}"] * size))]
    return items


def run_of(llm, hist: list[dict], **fields) -> ResponseRun:
    req = CreateResponseRequest(model="m", **fields)
    hosted = HostedTools(req.tools, None, None, 5)
    return ResponseRun(req, new_id("resp"), hist, normalize_input(req.input), llm, hosted, None, _never)


async def _never() -> bool:
    return False


# ---- what may be dropped ---------------------------------------------------------------------------------------

def test_split_keeps_the_newest_user_input_apart():
    hist = history(2)
    earlier, newest = split_context(hist, normalize_input("now"))
    assert earlier == hist and [it["content"][0]["text"] for it in newest] == ["now"]
    # stateless chaining: the whole conversation in `input`; only its last user message on is the newest input
    inp = normalize_input([{"role": "user", "content": "old"}, {"role": "assistant", "content": "ok"},
                           {"role": "user", "content": "new"}, {"type": "function_call_output", "call_id": "c",
                                                                "output": "x"}])
    earlier, newest = split_context([], inp)
    assert earlier == inp[:2] and newest == inp[2:]
    # no user message in the input (a tool result): the whole input is kept
    earlier, newest = split_context(hist, inp[3:])
    assert earlier == hist and newest == inp[3:]


def test_a_compaction_item_hides_what_came_before_it():
    summary = compaction_item("the user is Ada")
    earlier, newest = split_context(history(3), [summary, user("who am I?")])
    assert earlier == [summary] and newest[0]["content"][0]["text"] == "who am I?"
    assert to_chat_messages([summary]) == [{"role": "system", "content": SUMMARY_HEADER + "the user is Ada"}]


def test_units_keep_tool_calls_with_their_results():
    msgs = [{"role": "user", "content": "u"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}, {"id": "2"}]},
            {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"},
            {"role": "assistant", "content": "done"}, {"role": "tool", "content": "orphan"}]
    assert [len(u) for u in units(msgs)] == [1, 3, 1, 1]


def test_fewest_to_drop_searches_in_log_steps():
    asked = []

    async def fits(k: int) -> bool:
        asked.append(k)
        return k >= 37

    assert asyncio.run(fewest_to_drop(100, fits)) == 37 and len(asked) <= 9
    assert asyncio.run(fewest_to_drop(100, lambda k: _const(True))) == 0
    assert asyncio.run(fewest_to_drop(5, lambda k: _const(False))) == 5  # nothing fits: drop all, the model says why


async def _const(v: bool) -> bool:
    return v


# ---- truncation ---------------------------------------------------------------------------------------------------

def test_truncation_auto_drops_the_oldest_until_it_fits():
    llm = CountingLLM([{"text": "fine"}], context_length=70)
    run = run_of(llm, history(6), input="last question", instructions="Be brief.", max_output_tokens=10,
                 truncation="auto")
    final = collect(run)[-1]["response"]
    sent = llm.requests[0]
    assert final["status"] == "completed" and final["truncation"] == "auto"
    assert words(sent) <= 60  # the context less max_output_tokens
    assert sent.messages[0].content == "Be brief." and sent.messages[-1].content == "last question"
    kept = [m.content.split()[0] for m in sent.messages[1:-1]]
    assert kept == ["a3", "q4", "a4", "q5", "a5"]  # the newest earlier items that fit (54 words), in order
    assert final["usage"]["input_tokens"] == words(sent)


def test_truncation_disabled_sends_everything():
    llm = CountingLLM([{"text": "fine"}], context_length=70)
    collect(run_of(llm, history(6), input="last question", max_output_tokens=10))
    assert words(llm.requests[0]) == 6 * 20 + 2 and llm.counts == 0  # the model refuses it (a 400, graph tests)


def test_input_tokens_is_what_the_first_call_reads():
    for fields in ({}, {"truncation": "auto", "max_output_tokens": 10}):
        counted = asyncio.run(run_of(CountingLLM([], context_length=70), history(6), input="q", **fields)
                              .input_tokens())
        llm = CountingLLM([{"text": "fine"}], context_length=70)
        final = collect(run_of(llm, history(6), input="q", **fields))[-1]["response"]
        assert counted == final["usage"]["input_tokens"] == words(llm.requests[0])
    assert counted < 6 * 20


# ---- compaction ---------------------------------------------------------------------------------------------------

def test_compaction_past_the_threshold_summarises_the_history():
    llm = CountingLLM([{"text": "You are Ada"}], summaries=["The user is Ada Lovelace, a mathematician."])
    hist = [user("My name is Ada Lovelace."), assistant("Nice to meet you, Ada.")] + history(3)
    run = run_of(llm, hist, input="What is my name?", instructions="Be brief.", max_output_tokens=3,
                 context_management=[{"type": "compaction", "compact_threshold": 30}])
    events = collect(run)
    final = events[-1]["response"]
    item, answer = final["output"]
    assert item["type"] == "compaction" and item["encrypted_content"] == "The user is Ada Lovelace, a mathematician."
    assert answer["type"] == "message" and final["status"] == "completed"  # the summary did not spend the budget
    told = llm.summary_requests[0].messages[1].content
    assert "user: My name is Ada Lovelace." in told and "user: What is my name?" in told
    sent = [(m.role, m.content) for m in llm.requests[0].messages]
    assert sent == [("system", "Be brief."), ("system", SUMMARY_HEADER + item["encrypted_content"]),
                    ("user", "What is my name?")]
    summary_usage = words(llm.summary_requests[0]) + 7  # its prompt, and its 7 words
    assert final["usage"]["total_tokens"] == summary_usage + words(llm.requests[0]) + 3
    assert "response.output_item.done" in [e["type"] for e in events[:6]]


def test_no_compaction_below_the_threshold():
    llm = CountingLLM([{"text": "ok"}], summaries=["never"])
    final = collect(run_of(llm, history(1), input="q",
                           context_management=[{"type": "compaction", "compact_threshold": 500}]))[-1]["response"]
    assert [it["type"] for it in final["output"]] == ["message"] and not llm.summary_requests


def test_compact_endpoint_shape():
    llm = CountingLLM([], summaries=["Ada asked twice."])
    items = [compaction_item("older"), user("first"), assistant("reply"), user("second")]
    out = asyncio.run(compact(llm, "m", history(1) + items, "Keep names."))
    assert out["object"] == "response.compaction"
    assert [it.get("role") or it["type"] for it in out["output"]] == ["user", "user", "compaction"]
    assert out["output"][-1]["encrypted_content"] == "Ada asked twice."
    told = llm.summary_requests[0].messages[1].content.splitlines()
    assert told == ["system: Keep names.", "system: " + SUMMARY_HEADER.strip(), "older", "user: first",
                    "assistant: reply", "user: second"]  # history(1), before the older compaction, is not read
    assert out["usage"]["output_tokens"] == 3


def test_summary_of_a_history_longer_than_the_context_keeps_its_newest_part():
    llm = CountingLLM([], context_length=400, summaries=["s"])
    asyncio.run(compact(llm, "m", history(20), None))
    told = llm.summary_requests[0].messages[1].content
    assert "a19" in told and "q0 " not in told and words(llm.summary_requests[0]) <= 400 - 256


def test_compaction_items_in_input_are_checked():
    with pytest.raises(InvalidRequestError, match="encrypted_content"):
        normalize_input([{"type": "compaction", "encrypted_content": " "}])
    (item,) = normalize_input([{"type": "compaction", "id": "cmp_1", "encrypted_content": "sum"}])
    assert item["id"] == "cmp_1" and item["encrypted_content"] == "sum"


def test_transcript_names_tool_calls():
    msgs = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "content": "3 C"}]
    assert transcript(msgs) == ['assistant called get_weather({"city": "Oslo"})', "tool result: 3 C"]


# ---- include, logprobs, parallel tool calls ------------------------------------------------------------------------

def test_include_values():
    CreateResponseRequest(model="m", input="x", include=["reasoning.encrypted_content", "file_search_call.results",
                                                         "message.output_text.logprobs"])
    with pytest.raises(ValidationError, match="not supported"):
        CreateResponseRequest(model="m", input="x", include=["message.input_image.image_url"])


def test_logprobs_asked_for_and_carried_to_the_output_text():
    llm = CountingLLM([{"text": "hi"}])
    collect(run_of(llm, [], input="x", include=["message.output_text.logprobs"], top_logprobs=2))
    assert llm.requests[0].logprobs and llm.requests[0].top_logprobs == 2
    llm = CountingLLM([{"text": "hi"}])
    collect(run_of(llm, [], input="x"))
    assert not llm.requests[0].logprobs
    lp = {"token": "hi", "logprob": -0.1, "bytes": [104, 105], "top_logprobs": []}
    gen = ModelOutput("msg_1", buffered=False)
    assert gen.fold({"choices": [{"delta": {"content": "hi"}, "logprobs": {"content": [lp]}}]}) == [("hi", [lp])]
    out = ResponseEvents(CreateResponseRequest(model="m", input="x"), "resp_1")
    done = out.close_message("msg_1", gen.text, gen.logprobs)
    assert done[0]["logprobs"] == [lp] and done[-1]["item"]["content"][0]["logprobs"] == [lp]


def test_parallel_tool_calls_off_keeps_one_call():
    specs = [ToolSpec("get_weather", "", {"type": "object"})]
    text = json.dumps([{"name": "get_weather", "parameters": {"city": c}} for c in ("Oslo", "Bergen")])
    for parallel, n in ((True, 2), (False, 1)):
        stream = ToolCallStream(specs, "auto", parallel)
        assert stream.feed(text) == ""
        deltas, reason = stream.finish()
        assert reason == "tool_calls" and len({d["tool_calls"][0]["index"] for d in deltas}) == n
    llm = CountingLLM([{"calls": [("f", {})]}])
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    collect(run_of(llm, [], input="x", tools=[tool], parallel_tool_calls=False))
    assert llm.requests[0].parallel_tool_calls is False
