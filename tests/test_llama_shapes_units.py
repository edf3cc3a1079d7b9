"""Llama Stack response models (serve/protocol/llama_*.py) against the producers' dicts, without Ray: what a
producer builds validates, serialises back unchanged, and passes the strict check against llama-stack-client."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from llama_stack_client.types import Tool as SdkTool
from llama_stack_client.types import ToolDef as SdkToolDef
from llama_stack_client.types import ToolGroup as SdkToolGroup
from llama_stack_client.types import ToolInvocationResult as SdkInvocation
from llama_stack_client.types.agents import AgentTurnResponseStreamChunk as SdkChunk
from pydantic import ValidationError

from deployments.agents.llama_agents import now_iso
from deployments.agents.tool_runtime import BUILTIN_TOOLS, invocation_result, mcp_tool_def, tool_object
from deployments.agents.toolgroups import RAG_GROUP, toolgroup_object
from deployments.agents.turn_events import TurnEvents
from serve.protocol.llama_agents import AgentTurnResponseStreamChunk, Turn
from serve.protocol.llama_tools import Tool, ToolDef, ToolGroup, ToolInvocationResult
from serve.protocol.openapi_bodies import event_stream_schema
from serve.protocol.telemetry import Trace
from tests.llama_shapes import check_shape


def _round_trip(model, body: dict) -> None:
    assert model.model_validate(body).model_dump(mode="json", exclude_unset=True) == body  # as the routes serve


def test_tool_producers_match_the_models():
    group = toolgroup_object(RAG_GROUP, "rag-runtime")
    _round_trip(ToolGroup, group)
    check_shape(SdkToolGroup, group)
    tool = tool_object(BUILTIN_TOOLS[RAG_GROUP][0], group)
    _round_trip(Tool, tool)
    check_shape(SdkTool, tool)
    for result in (invocation_result([{"type": "text", "text": "42"}]), invocation_result("boom", error="boom")):
        _round_trip(ToolInvocationResult, result)
        check_shape(SdkInvocation, result)


def test_mcp_tool_def_types_every_parameter_as_a_string():
    schema = {"properties": {"n": {"type": ["integer", "null"]}, "x": {"type": ["null"]}, "s": {}},
              "required": ["n"]}
    d = mcp_tool_def({"name": "t", "input_schema": schema}, "http://mcp")
    assert [p["parameter_type"] for p in d["parameters"]] == ["integer", "string", "string"]
    ToolDef.model_validate(d)
    check_shape(SdkToolDef, d)


def test_turn_events_validate_as_stream_chunks():
    events = TurnEvents("turn-1")
    chunks = [c for e in ({"type": "response.output_text.delta", "delta": "Hi"},
                          {"type": "response.output_item.done",
                           "item": {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}},
                          {"type": "response.completed", "response": {}})
              for c in events.feed(e)]
    kinds = [c["event"]["payload"]["event_type"] for c in chunks]
    assert kinds == ["step_start", "step_progress", "step_complete"]
    for c in chunks:
        AgentTurnResponseStreamChunk.model_validate(c)
        check_shape(SdkChunk, c)
    turn = {"turn_id": "turn-1", "session_id": "s", "input_messages": [{"role": "user", "content": "hello"}],
            "steps": events.steps, "output_message": events.output_message, "output_attachments": [],
            "started_at": now_iso(), "completed_at": now_iso()}
    _round_trip(Turn, turn)


def test_turn_without_its_output_message_is_refused():
    with pytest.raises(ValidationError):
        Turn.model_validate({"turn_id": "t", "session_id": "s", "input_messages": [], "steps": [],
                             "output_message": None, "started_at": now_iso()})


def test_times_are_served_as_written():
    row = SimpleNamespace(trace_id="t", root_span_id="r", start_time="2025-05-01T10:00:00+00:00",
                          end_time="2025-05-01T10:00:02.500000+00:00")
    _round_trip(Trace, vars(row))


def test_event_stream_schema_is_self_contained():
    schema = event_stream_schema(AgentTurnResponseStreamChunk)
    text = str(schema)
    assert "$ref" not in text and "$defs" not in text
    payload = schema["properties"]["event"]["properties"]["payload"]
    assert len(payload["oneOf"]) == 6
