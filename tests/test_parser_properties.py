"""Property tests (hypothesis) of the parsers that read what clients and models send: tool calls, SSE, vector store
filters, chunking, stop strings, file extraction, the bench client's readers. Each property is either "never raises
anything but the documented error" or a round trip; example counts are small so the file runs in seconds."""

from __future__ import annotations

import asyncio
import json
import os
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from benchmarks.client import RequestResult, _error_message, _read_stream
from benchmarks.scenarios import ChatScenario
from deployments.inference.detokenizer import IncrementalDetokenizer, StopStringMatcher
from deployments.inference.tool_calls import history_for_template, parse_tool_calls, parse_tools, resolve_tool_choice
from deployments.inference.tool_stream import ToolCallStream
from deployments.vector_io.chunking import chunk_text
from deployments.vector_io.extract import UnsupportedFileError, extract_text
from deployments.vector_io.filters import COMPARISONS, matches, validate_filter
from serve.errors import InvalidRequestError
from serve.sse import sse_event, sse_stream
from tests.fake_embedding import WordTokenizer

# CI runs the same examples every time (a red CI names a change, not a lucky draw); developers explore.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["get_weather", "noop", "search-docs"]
SPECS = parse_tools([{"type": "function", "function": {"name": n}} for n in NAMES])
DEEP = "[" * 100_000  # deeper than any recursive parser's stack

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


# ---- tool calls -----------------------------------------------------------------------------------------------

@st.composite
def model_call_texts(draw) -> tuple[str, list[tuple[str, dict]]]:
    """Model output that is a call in one of the accepted forms, and the calls it holds."""
    calls = draw(st.lists(st.tuples(st.sampled_from(NAMES), json_objects), min_size=1, max_size=3))
    key = draw(st.sampled_from(["parameters", "arguments"]))
    objs = [{"name": n, key: args} for n, args in calls]
    ws = draw(st.sampled_from(["", " ", "\n", " \n\t"]))
    form = draw(st.sampled_from(["object", "list", "tagged"]))
    if form == "object":
        objs = objs[:1]
        calls = calls[:1]
        body = json.dumps(objs[0], ensure_ascii=draw(st.booleans()))
    elif form == "list":
        body = json.dumps(objs)
    else:
        body = ws.join(f"<tool_call>{ws}{json.dumps(o)}{ws}</tool_call>" for o in objs)
    return ws + body + ws, calls


@FAST
@given(model_call_texts())
def test_tool_calls_round_trip(case):
    text, calls = case
    parsed = parse_tool_calls(text, SPECS)
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed] == calls


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:], strict=False)]


@FAST
@given(st.one_of(model_call_texts().map(lambda c: c[0]), st.text(max_size=60),
                 st.builds(lambda pre, call: pre + call[0], st.text(max_size=10), model_call_texts())),
       st.lists(st.integers(0, 200), max_size=6), st.sampled_from(["auto", "required"]))
@example('Sure! <tool_call>{"name": "noop", "arguments": {}}</tool_call>', [3], "auto")
def test_streamed_tool_calls_match_the_whole_text(text, cuts, mode):
    """Fed in any pieces, the stream ends with what parsing the whole text gives: the same calls, or the text."""
    stream = ToolCallStream(SPECS, mode)
    content = "".join(stream.feed(piece) for piece in split(text, cuts))
    tail, reason = stream.finish()
    calls = parse_tool_calls(text, SPECS)
    content += "".join(d.get("content", "") for d in tail)
    streamed = [d["tool_calls"][0] for d in tail if "tool_calls" in d]
    if calls:
        assert reason == "tool_calls" and content == ""
        names = [d["function"]["name"] for d in streamed if "name" in d["function"]]
        args = [d["function"]["arguments"] for d in streamed if d["function"].get("arguments")]
        assert names == [c["function"]["name"] for c in calls]
        assert args == [c["function"]["arguments"] for c in calls]
    else:
        assert reason is None and content == text and streamed == []


@FAST
@given(st.one_of(json_values, st.text(max_size=40)))
@example(DEEP)
@example('{"name": "noop", "parameters": ' + "[" * 5000 + "]" * 5000 + "}")
def test_parse_tool_calls_never_raises(text):
    calls = parse_tool_calls(text if isinstance(text, str) else json.dumps(text), SPECS)
    assert calls is None or all(c["function"]["name"] in NAMES for c in calls)


@FAST
@given(json_values, st.lists(json_values, max_size=3))
@example({"type": "function", "function": "noop"}, [])
@example({"type": "function", "function": {"name": ["noop"]}}, [])
def test_tool_choice_and_tools_fail_only_as_bad_requests(choice, tools):
    for call in (lambda: resolve_tool_choice(choice, SPECS), lambda: parse_tools(tools)):
        try:
            call()
        except InvalidRequestError:
            pass


@FAST
@given(st.lists(st.one_of(json_objects, st.builds(lambda f: {"function": f}, json_values)), max_size=3),
       st.booleans())
@example([{"function": "noop"}], False)
@example([{"function": {"name": "noop", "arguments": DEEP}}], False)
def test_history_tool_calls_fail_only_as_bad_requests(calls, native):
    try:
        history_for_template([{"role": "assistant", "content": None, "tool_calls": calls}], native)
    except InvalidRequestError:
        pass


# ---- SSE ----------------------------------------------------------------------------------------------------------

def read_sse(body: str) -> list:
    """A reader as the SSE spec has it: events end at a blank line, lines end at CRLF, LF or CR."""
    events = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", body):
        data = [line[5:].lstrip(" ") for line in re.split(r"\r\n|\n|\r", block) if line.startswith("data:")]
        if data:
            events.append("\n".join(data))
    return events


@FAST
@given(st.lists(json_values, max_size=4), st.booleans())
@example(["line\nbreak\r\u2028\u0085 done"], True)
def test_sse_round_trip(items, fail):
    async def rest():
        for item in items[1:]:
            yield item
        if fail:
            raise InvalidRequestError("broken mid-stream", param="x")

    async def collect() -> str:
        return "".join([e async for e in sse_stream(items[0] if items else {}, rest())])

    events = read_sse(asyncio.run(collect()))
    # a list item is a run of events (LLM streams arrive as lists of chunks)
    sent = [x for it in (items or [{}]) for x in (it if isinstance(it, list) else [it])]
    if fail:
        assert [json.loads(e) for e in events[:-1]] == sent
        assert json.loads(events[-1])["error"]["message"] == "broken mid-stream"
    else:
        assert events[-1] == "[DONE]" and [json.loads(e) for e in events[:-1]] == sent


class _FakeContent:
    """aiohttp's response.content iterates lines; a line longer than its buffer comes in pieces."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    def __aiter__(self):
        async def gen():
            for p in self.pieces:
                yield p
        return gen()


@FAST
@given(st.lists(st.text(max_size=12), min_size=1, max_size=5), st.lists(st.integers(1, 40), max_size=4),
       st.booleans())
def test_bench_reader_reads_what_the_server_writes(deltas, cuts, usage):
    chunks = [{"choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]} for d in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        chunks.append({"choices": [], "usage": {"completion_tokens": len(deltas)}})
    body = ("".join(sse_event(c) for c in chunks) + "data: [DONE]\n\n").encode()
    pieces = [p for line in body.splitlines(keepends=True) for p in split(line, cuts)]  # pieces of lines

    class Response:
        content = _FakeContent(pieces)

    r = RequestResult(index=0, expected_input_tokens=1, expected_output_tokens=1, start=0.0)
    asyncio.run(_read_stream(Response(), ChatScenario(), r))
    assert r.ok and r.text == "".join(deltas)
    assert r.usage == ({"completion_tokens": len(deltas)} if usage else None)


@FAST
@given(st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()))
@example(DEEP.encode())
@example(b'{"error": {"message": ' + b"[" * 50_000 + b"}}")
def test_bench_error_message_never_raises(raw):
    assert isinstance(_error_message(raw), str)


# ---- vector store filters ------------------------------------------------------------------------------------------

attr_values = st.text(max_size=5) | st.integers(-5, 5) | st.floats(allow_nan=False) | st.booleans()
comparison = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(sorted(COMPARISONS - {"in", "nin"})),
                           "key": st.sampled_from("abc"), "value": attr_values}),
    st.fixed_dictionaries({"type": st.sampled_from(["in", "nin"]), "key": st.sampled_from("abc"),
                           "value": st.lists(attr_values, max_size=3)}))
filters = st.recursive(comparison, lambda inner: st.fixed_dictionaries(
    {"type": st.sampled_from(["and", "or"]), "filters": st.lists(inner, min_size=1, max_size=3)}), max_leaves=8)
attributes = st.dictionaries(st.sampled_from("abc"), attr_values, max_size=3)


@FAST
@given(filters | json_values, attributes)
@example({"type": ["eq"], "key": "a", "value": 1}, {})
@example({"type": {"x": 1}}, {})
def test_filters_fail_only_as_bad_requests_and_valid_ones_always_evaluate(f, attrs):
    try:
        validate_filter(f)
    except InvalidRequestError:
        return
    assert matches(f, attrs) in (True, False)


def test_deeply_nested_filters_are_a_bad_request():
    f: dict = {"type": "eq", "key": "a", "value": 1}
    for _ in range(5000):
        f = {"type": "and", "filters": [f]}
    with pytest.raises(InvalidRequestError):
        validate_filter(f)


@FAST
@given(filters, attributes)
def test_filter_logic(f, attrs):
    """`and`/`or` are all/any of their parts; ne/nin are the negations of eq/in (missing keys included)."""
    validate_filter(f)
    if f["type"] in ("and", "or"):
        parts = [matches(s, attrs) for s in f["filters"]]
        assert matches(f, attrs) == (all(parts) if f["type"] == "and" else any(parts))
    elif f["type"] in ("ne", "nin"):
        positive = {**f, "type": {"ne": "eq", "nin": "in"}[f["type"]]}
        assert matches(f, attrs) != matches(positive, attrs)


# ---- chunking -------------------------------------------------------------------------------------------------

words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)


@FAST
@given(st.lists(words, max_size=60).map(" ".join), st.integers(1, 12), st.integers(0, 12))
def test_chunks_are_bounded_verbatim_and_cover_the_text(text, max_tokens, overlap):
    overlap = min(overlap, max_tokens // 2)
    tok = WordTokenizer()
    pieces = chunk_text(text, tok, max_tokens, overlap)
    assert all(p and p in text for p in pieces)
    assert all(len(tok(p)["offset_mapping"]) <= max_tokens for p in pieces)
    covered = " ".join(pieces).split()
    assert set(text.split()) <= set(covered)
    assert (pieces == []) == (text.strip() == "")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from deployments.vector_io.embedding_model import resolve_embedding_source

    return AutoTokenizer.from_pretrained(resolve_embedding_source("all-MiniLM-L6-v2"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300), max_tokens=st.integers(8, 40))
def test_chunks_with_the_real_tokenizer(minilm_tokenizer, text, max_tokens):
    """Windows cut at subword offsets still re-tokenize within the embedding model's budget."""
    pieces = chunk_text(text, minilm_tokenizer, max_tokens, max_tokens // 4)
    assert all(p and p in text for p in pieces)
    assert all(len(minilm_tokenizer(p, add_special_tokens=False)["input_ids"]) <= max_tokens for p in pieces)


# ---- stop strings -------------------------------------------------------------------------------------------------

@FAST
@given(st.text("abc", max_size=30), st.lists(st.text("abc", min_size=1, max_size=4), max_size=3),
       st.lists(st.integers(0, 30), max_size=8))
def test_stop_strings_cut_at_the_first_occurrence_however_the_text_is_split(text, stops, cuts):
    """Generation stops at the first delta after which the text holds a stop string, cut where the earliest
    one begins: however the text was split, nothing before that is lost and no stop string is emitted."""
    pieces = split(text, cuts)
    m = StopStringMatcher(stops)
    out = "".join(m.feed(piece) for piece in pieces) + m.flush()
    expected, stopped, end = text, False, 0
    for piece in pieces:
        end += len(piece)
        hits = [text[:end].find(s) for s in stops if s in text[:end]]
        if hits:
            expected, stopped = text[:min(hits)], True
            break
    assert out == expected and m.stopped == stopped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_incremental_detokenizer_matches_decoding_everything(tokenizer, data):
    """Token by token, the deltas add up to decoding all ids at once (byte-level BPE: a token can end inside a
    UTF-8 character, whose bytes then wait for the next token)."""
    ids = data.draw(st.lists(st.integers(0, len(tokenizer) - 1), max_size=24)
                    | st.text(max_size=30).map(lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]))
    det = IncrementalDetokenizer(tokenizer)
    out = "".join(det.add(i) for i in ids)
    full = tokenizer.decode(ids, skip_special_tokens=True)
    assert out == full or (full.endswith("\ufffd") and full.startswith(out))


# ---- file extraction --------------------------------------------------------------------------------------------

@FAST
@given(st.sampled_from(["a.txt", "a.json", "a.jsonl", "a.html", "a.md", "a.pdf", "a.bin", "noext"]),
       st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
       | st.binary(max_size=200).map(lambda b: b"%PDF-1.4\n" + b))
@example("a.json", DEEP.encode())
@example("a.txt", b"text \x00 with a NUL")
def test_extraction_fails_only_as_unsupported(name, data):
    try:
        text = extract_text(name, data)
    except UnsupportedFileError:
        return
    assert isinstance(text, str) and "\x00" not in text
