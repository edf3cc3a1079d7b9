import json

import pytest

from deployments.inference.tool_calls import (
    call_schema,
    history_for_template,
    parse_tool_calls,
    parse_tools,
    resolve_tool_choice,
    tools_system_prompt,
)
from deployments.inference.tool_stream import ToolCallStream
from serve.errors import InvalidRequestError

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "noop"}}]


def test_parse_and_choice():
    specs = parse_tools(TOOLS)
    assert [s.name for s in specs] == ["get_weather", "noop"]
    assert specs[1].parameters == {"type": "object", "properties": {}}
    assert resolve_tool_choice(None, specs) == ("auto", None)
    assert resolve_tool_choice({"type": "function", "function": {"name": "noop"}}, specs) == ("named", "noop")
    with pytest.raises(InvalidRequestError):
        resolve_tool_choice("sometimes", specs)
    with pytest.raises(InvalidRequestError):
        resolve_tool_choice("required", [])
    with pytest.raises(InvalidRequestError):
        parse_tools([{"type": "function", "function": {"name": "a b"}}])


def test_call_schema():
    specs = parse_tools(TOOLS)
    named = call_schema(specs, "named", "get_weather")
    assert named["properties"]["name"] == {"const": "get_weather"}
    assert len(call_schema(specs, "required", None)["anyOf"]) == 2


@pytest.mark.parametrize("text,names", [
    ('{"name": "get_weather", "parameters": {"city": "Oslo"}}', ["get_weather"]),
    ('  [{"name": "noop", "parameters": {}}, {"name": "get_weather", "arguments": {"city": "x"}}]',
     ["noop", "get_weather"]),
    ('<tool_call>\n{"name": "noop", "arguments": {}}\n</tool_call>', ["noop"]),
])
def test_parse_tool_calls(text, names):
    calls = parse_tool_calls(text, parse_tools(TOOLS))
    assert [c["function"]["name"] for c in calls] == names
    assert all(isinstance(json.loads(c["function"]["arguments"]), dict) for c in calls)
    assert all(c["id"].startswith("call_") for c in calls)


@pytest.mark.parametrize("text", ["Paris is sunny.", '{"name": "unknown", "parameters": {}}', '{"name": "noop"',
                                  '{"name": "noop", "parameters": 3}'])
def test_not_tool_calls(text):
    assert parse_tool_calls(text, parse_tools(TOOLS)) is None


def test_history_for_chatml_templates():
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "noop", "arguments": "{}"}}]},
            {"role": "tool", "content": "done", "tool_call_id": "c1"}]
    out = history_for_template(msgs, native=False)
    assert json.loads(out[1]["content"]) == {"name": "noop", "parameters": {}}
    assert out[2] == {"role": "tool", "content": "done"}
    assert "get_weather" in tools_system_prompt(parse_tools(TOOLS))


def test_stream_buffers_calls_and_passes_text():
    specs = parse_tools(TOOLS)
    s = ToolCallStream(specs, "auto")
    assert s.feed("Hel") == "Hel" and s.feed("lo") == "lo"
    assert s.finish() == ([], None)
    s = ToolCallStream(specs, "auto")
    assert s.feed(' {"name": "noop", ') == "" and s.feed('"parameters": {}}') == ""
    deltas, reason = s.finish()
    assert reason == "tool_calls"
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "noop"
    s = ToolCallStream(specs, "auto")
    s.feed("{not a call}")
    assert s.finish() == ([{"content": "{not a call}"}], None)
