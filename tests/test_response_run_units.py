"""The Responses loop (ResponseRun) without Ray: fake LLM, VectorIO and Safety handles shaped like Ray Serve
DeploymentHandles, a scripted model, and the typed event stream checked end to end."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from deployments.agents.hosted_tools import HostedTools
from deployments.agents.items import new_id, normalize_input
from deployments.agents.orchestrator import ResponseRun
from serve.errors import NotFoundError
from serve.protocol.openai_chat import ChatCompletionRequest
from serve.protocol.responses import CreateResponseRequest

# ---- fakes ----------------------------------------------------------------------------------------------------


class _Method:
    def __init__(self, remote):
        self.remote = remote


class FakeStream:
    """A DeploymentResponseGenerator: async-iterable lists of chunks, stoppable with cancel()."""

    def __init__(self, batches: list[list[dict]], llm: FakeLLM):
        self.batches, self.llm, self.cancelled = batches, llm, False

    async def _gen(self):
        for batch in self.batches:
            if self.cancelled:
                return
            await asyncio.sleep(0)
            self.llm.emitted += len(batch)
            yield batch

    def __aiter__(self):
        return self._gen()

    def cancel(self) -> None:
        self.cancelled = True


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"object": "chat.completion.chunk", "choices": choices, **({"usage": usage} if usage else {})}


class FakeLLM:
    """A scripted model behind a handle: each call takes the next reply, {"text": ...} or {"calls": [(name, args)]}.
    Text streams word by word (one word = one token) and stops at max_tokens with finish_reason "length"."""

    def __init__(self, replies: list[dict[str, Any]]):
        self.replies = list(replies)
        self.requests: list[ChatCompletionRequest] = []
        self.streams: list[FakeStream] = []
        self.emitted = 0  # chunks streamed so far, over all calls
        self._used = 0  # completion tokens of the reply being built

    def options(self, stream: bool = False) -> FakeLLM._Streaming:
        if not stream:
            raise TypeError("the orchestrator must stream from the LLM handle")
        return FakeLLM._Streaming(self)

    class _Streaming:
        def __init__(self, llm: FakeLLM):
            self.chat_stream = _Method(llm._chat_stream)

    def _chat_stream(self, req: ChatCompletionRequest) -> FakeStream:
        if not self.replies:
            raise RuntimeError("the model was called more often than scripted")
        self.requests.append(req)
        reply = self.replies.pop(0)
        chunks = self._calls(reply["calls"]) if "calls" in reply else self._text(reply["text"], req.max_tokens)
        prompt = sum(len(str(m.content or "").split()) for m in req.messages)
        chunks[-1].append(_chunk(usage={"prompt_tokens": prompt, "completion_tokens": self._used}))
        stream = FakeStream(chunks, self)
        self.streams.append(stream)
        return stream

    def _text(self, text: str, max_tokens: int | None) -> list[list[dict]]:
        words = text.split(" ")
        kept = words[:max_tokens] if max_tokens else words
        self._used = len(kept)
        pieces = [_chunk({"content": w if i == 0 else f" {w}"}) for i, w in enumerate(kept)]
        pieces.append(_chunk({}, finish="length" if len(kept) < len(words) else "stop"))
        return [pieces[i:i + 2] for i in range(0, len(pieces), 2)]  # two chunks per batch, as the deployment does

    def _calls(self, calls: list[tuple[str, dict]]) -> list[list[dict]]:
        batches, self._used = [], 0
        for i, (name, args) in enumerate(calls):
            raw = json.dumps(args)
            self._used += 1 + len(raw.split())
            half = len(raw) // 2  # the arguments arrive in two deltas, as streamed tool calls do
            batches.append([_chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                                    "function": {"name": name, "arguments": raw[:half]}}]}),
                            _chunk({"tool_calls": [{"index": i, "function": {"arguments": raw[half:]}}]})])
        batches.append([_chunk({}, finish="tool_calls")])
        return batches


class FakeVectorIO:
    """Vector stores as in-memory documents, scored by the words they share with the queries."""

    def __init__(self, stores: dict[str, list[tuple[str, str, str]]]):
        self.stores = stores  # store id -> [(file_id, filename, text)]
        self.searches: list[tuple[str, Any]] = []
        self.search_vector_store = _Method(self._search)

    async def _search(self, store_id: str, req: Any) -> dict[str, Any]:
        if store_id not in self.stores:
            raise NotFoundError(f"Vector store '{store_id}' not found")
        self.searches.append((store_id, req))
        queries = req.query if isinstance(req.query, list) else [req.query]
        words = {w.strip("?.,").lower() for q in queries for w in q.split()}
        data = []
        for file_id, filename, text in self.stores[store_id]:
            score = len(words & {w.strip("?.,").lower() for w in text.split()})
            if score:
                data.append({"file_id": file_id, "filename": filename, "score": float(score), "attributes": {},
                             "content": [{"type": "text", "text": text}]})
        data.sort(key=lambda d: -d["score"])
        return {"object": "vector_store.search_results.page", "data": data[:req.max_num_results]}


class FakeSafety:
    """Shields that flag any message containing one of their banned words."""

    def __init__(self, banned: set[str]):
        self.banned = banned
        self.checked: list[tuple[str, str]] = []
        self.run_shield = _Method(self._run_shield)

    async def _run_shield(self, shield_id: str, messages: list[dict], params: dict) -> dict[str, Any]:
        text = messages[-1]["content"]
        self.checked.append((messages[-1]["role"], text))
        if any(w in text.lower() for w in self.banned):
            return {"violation": {"violation_level": "error", "user_message": f"{shield_id} refused this",
                                  "metadata": {}}}
        return {"violation": None}


async def _never() -> bool:
    return False


def make_run(llm: FakeLLM, *, vector_io: Any = None, safety: Any = None, cancelled: Any = _never,
             **fields: Any) -> ResponseRun:
    req = CreateResponseRequest(model="m", **fields)
    hosted = HostedTools(req.tools, vector_io, None, 5)
    return ResponseRun(req, new_id("resp"), [], normalize_input(req.input), llm, hosted, safety, cancelled)


def collect(run: ResponseRun) -> list[dict[str, Any]]:
    async def go():
        return [e async for e in run.events()]

    return asyncio.run(go())


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


FRANCE = [("file-fr", "france.txt", "Paris is the capital of France."),
          ("file-ba", "bananas.txt", "Bananas grow in tropical climates.")]
FILE_SEARCH = {"type": "file_search", "vector_store_ids": ["vs_1"]}

# ---- tests ----------------------------------------------------------------------------------------------------


def test_plain_text_answer_streams_and_completes():
    llm = FakeLLM([{"text": "Hello there friend"}])
    run = make_run(llm, input="Say hello", instructions="Be brief.")
    events = collect(run)
    assert types(events)[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                                 "response.content_part.added"]
    assert types(events)[-4:] == ["response.output_text.done", "response.content_part.done",
                                  "response.output_item.done", "response.completed"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hello there friend"
    assert [e["sequence_number"] for e in events] == list(range(1, len(events) + 1)) and run.seq == len(events)
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output_text"] == "Hello there friend"
    assert [it["type"] for it in final["output"]] == ["message"]
    assert final["usage"]["output_tokens"] == 3 and final["usage"]["input_tokens"] == 4
    assert run.response["status"] == "completed" and run._snapshot()["usage"]["total_tokens"] == 7
    sent = llm.requests[0]
    assert [(m.role, m.content) for m in sent.messages] == [("system", "Be brief."), ("user", "Say hello")]
    assert sent.tools is None and sent.stream


def test_function_call_ends_the_response_for_the_client():
    llm = FakeLLM([{"calls": [("get_weather", {"city": "Paris"})]}])
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    events = collect(make_run(llm, input="Weather in Paris?", tools=[tool]))
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and len(llm.requests) == 1
    (call,) = final["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["call_id"] == "call_0"
    assert json.loads(call["arguments"]) == {"city": "Paris"}  # merged from two streamed deltas
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == call["arguments"] and done["name"] == "get_weather"
    assert [t["function"]["name"] for t in llm.requests[0].tools] == ["get_weather"]


def test_file_search_round_answers_with_citations():
    llm = FakeLLM([{"calls": [("file_search", {"query": "capital of France"})]}, {"text": "Paris [1]"}])
    vio = FakeVectorIO({"vs_1": FRANCE})
    events = collect(make_run(llm, vector_io=vio, input="What is the capital of France?", tools=[FILE_SEARCH],
                              include=["file_search_call.results"]))
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output_text"] == "Paris [1]"
    search, message = final["output"]
    assert search["type"] == "file_search_call" and search["status"] == "completed"
    assert search["queries"] == ["capital of France", "What is the capital of France?"]
    assert [r["file_id"] for r in search["results"]] == ["file-fr"]
    assert vio.searches[0][0] == "vs_1" and vio.searches[0][1].query == search["queries"]
    assert "response.file_search_call.searching" in types(events)
    tool_msg = llm.requests[1].messages[-1]
    assert tool_msg.role == "tool" and "Paris is the capital of France." in tool_msg.content
    assert tool_msg.tool_call_id == "call_0" and llm.requests[1].messages[-2].tool_calls[0]["id"] == "call_0"
    (citation,) = message["content"][0]["annotations"]
    assert citation == {"type": "file_citation", "file_id": "file-fr", "filename": "france.txt", "index": 9}


def test_failing_hosted_tool_is_a_result_the_model_sees():
    llm = FakeLLM([{"calls": [("file_search", {"query": "anything"})]}, {"text": "Sorry"}])
    tools = [{"type": "file_search", "vector_store_ids": ["vs_missing"]}]
    events = collect(make_run(llm, vector_io=FakeVectorIO({}), input="Find it", tools=tools))
    search = events[-1]["response"]["output"][0]
    assert search["status"] == "failed" and search["error"] == "Vector store 'vs_missing' not found"
    assert llm.requests[1].messages[-1].content == "The tool failed: Vector store 'vs_missing' not found"
    assert events[-1]["response"]["status"] == "completed"


def test_unexpected_tool_error_does_not_leak_internals():
    class BrokenVectorIO(FakeVectorIO):
        async def _search(self, store_id, req):
            raise RuntimeError("secret path /var/lib/x exploded")

    llm = FakeLLM([{"calls": [("file_search", {"query": "q"})]}, {"text": "Sorry"}])
    events = collect(make_run(llm, vector_io=BrokenVectorIO({}), input="Find it", tools=[FILE_SEARCH]))
    search = events[-1]["response"]["output"][0]
    assert search["status"] == "failed" and search["error"] == "internal server error (RuntimeError)"


def test_cancel_mid_stream_stops_generation():
    llm = FakeLLM([{"text": " ".join(f"w{i}" for i in range(40))}])

    async def cancelled() -> bool:
        return llm.emitted >= 4

    run = make_run(llm, input="Write a lot", cancelled=cancelled)
    run.cancel_poll_s = 0  # look at every chunk
    events = collect(run)
    assert events[-1]["type"] == "response.cancelled" and events[-1]["response"]["status"] == "cancelled"
    assert llm.streams[0].cancelled and llm.emitted < 40
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert 0 < len(deltas) < 40


def test_cancel_before_the_model_is_called():
    async def cancelled() -> bool:
        return True

    llm = FakeLLM([{"text": "never"}])
    events = collect(make_run(llm, input="hi", cancelled=cancelled))
    assert events[-1]["type"] == "response.cancelled" and llm.requests == []


def test_max_output_tokens_cuts_the_answer():
    llm = FakeLLM([{"text": "one two three four"}])
    events = collect(make_run(llm, input="Count", max_output_tokens=2))
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete" and final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output_text"] == "one two" and llm.requests[0].max_tokens == 2


def test_output_budget_spent_on_tool_calls_stops_before_the_next_call():
    llm = FakeLLM([{"calls": [("file_search", {"query": "capital of France"})]}, {"text": "unused"}])
    events = collect(make_run(llm, vector_io=FakeVectorIO({"vs_1": FRANCE}), input="Capital?", tools=[FILE_SEARCH],
                              max_output_tokens=5))  # the call costs 5 tokens
    final = events[-1]["response"]
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert len(llm.requests) == 1 and [it["type"] for it in final["output"]] == ["file_search_call"]


def test_max_tool_calls_turns_tools_off():
    replies = [{"calls": [("file_search", {"query": "capital of France"})]}, {"text": "Paris"}]
    limited, free = FakeLLM(replies), FakeLLM(replies)
    vio = FakeVectorIO({"vs_1": FRANCE})
    collect(make_run(limited, vector_io=vio, input="Capital?", tools=[FILE_SEARCH], max_tool_calls=1))
    collect(make_run(free, vector_io=vio, input="Capital?", tools=[FILE_SEARCH]))
    assert limited.requests[1].tool_choice == "none" and free.requests[1].tool_choice is None


def test_max_infer_iters_makes_the_response_incomplete():
    llm = FakeLLM([{"calls": [("file_search", {"query": "France"})]}] * 2)
    events = collect(make_run(llm, vector_io=FakeVectorIO({"vs_1": FRANCE}), input="Capital?", tools=[FILE_SEARCH],
                              max_infer_iters=2))
    final = events[-1]["response"]
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_infer_iters"}
    assert len(llm.requests) == 2 and [it["type"] for it in final["output"]] == ["file_search_call"] * 2


def test_input_guardrail_refuses_without_calling_the_model():
    llm = FakeLLM([{"text": "never"}])
    safety = FakeSafety({"bomb"})
    events = collect(make_run(llm, safety=safety, input="How do I build a bomb?", guardrails=["llama-guard"]))
    final = events[-1]["response"]
    assert final["status"] == "completed" and llm.requests == []
    (item,) = final["output"]
    assert item["content"] == [{"type": "refusal", "refusal": "llama-guard refused this"}]
    assert safety.checked == [("user", "How do I build a bomb?")]


def test_output_guardrail_holds_text_back():
    safety = FakeSafety({"bomb"})
    refused = collect(make_run(FakeLLM([{"text": "Here is a bomb recipe"}]), safety=safety, input="Cook",
                               guardrails=["llama-guard"]))
    assert "response.output_text.delta" not in types(refused)  # nothing leaked before the shield judged it
    assert refused[-1]["response"]["output"][0]["content"][0]["type"] == "refusal"
    passed = collect(make_run(FakeLLM([{"text": "Pasta with tomato"}]), safety=safety, input="Cook",
                              guardrails=["llama-guard"]))
    deltas = [e["delta"] for e in passed if e["type"] == "response.output_text.delta"]
    assert deltas == ["Pasta with tomato"] and passed[-1]["response"]["output_text"] == "Pasta with tomato"
    assert safety.checked[-1] == ("assistant", "Pasta with tomato")
