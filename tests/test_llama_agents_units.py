"""Llama Stack 0.2 tool groups, tool runtime and agent turns without Ray: SQL on sqlite, a real local MCP
server, and Responses events translated to turn chunks that llama-stack-client's own types must parse."""

from __future__ import annotations

import asyncio
import json

import pytest
from llama_stack_client.types.agents.agent_turn_response_stream_chunk import AgentTurnResponseStreamChunk
from llama_stack_client.types.agents.turn import Turn
from llama_stack_client.types.tool import Tool
from llama_stack_client.types.tool_group import ToolGroup

from deployments.agents.agent_turn import agent_tools, sampling, tool_choice, turn_items
from deployments.agents.items import normalize_input, to_chat_messages
from deployments.agents.llama_agents import AgentStore, now_iso
from deployments.agents.tool_runtime import ToolRuntime
from deployments.agents.toolgroups import ToolGroupRegistry
from deployments.agents.turn_events import TurnEvents, chunk
from serve.errors import ConflictError, FailedDependencyError, InvalidRequestError, NotFoundError
from serve.pagination import paginate_records
from serve.protocol.agents import AgentConfig


@pytest.fixture()
def db(tmp_path):
    import deployments.agents.llama_tables  # noqa: F401
    from serve.storage import Database

    return Database(f"sqlite:///{tmp_path / 'test.db'}")


@pytest.fixture()
def registry(db):
    return ToolGroupRegistry(db)


def test_registry_builtins_register_unregister(registry):
    assert [g["identifier"] for g in registry.list()] == ["builtin::rag"]
    ToolGroup.model_validate(registry.get("builtin::rag/knowledge_search"))
    registry.register("mcp::calc", "model-context-protocol", "http://127.0.0.1:9/mcp", None)
    registry.register("mcp::calc", "model-context-protocol", "http://127.0.0.1:9/mcp", None)  # same again: fine
    with pytest.raises(ConflictError):
        registry.register("mcp::calc", "model-context-protocol", "http://127.0.0.1:10/mcp", None)
    group = ToolGroup.model_validate(registry.get("mcp::calc"))
    assert group.mcp_endpoint.uri == "http://127.0.0.1:9/mcp" and group.provider_id == "model-context-protocol"
    for bad in [("x", "rag-runtime", "http://h/mcp"), ("x", "model-context-protocol", None),
                ("x", "model-context-protocol", "file:///etc/passwd"), ("builtin::rag", "model-context-protocol",
                                                                        "http://h/mcp"),
                ("builtin::websearch", "tavily-search", None)]:  # not configured here
        with pytest.raises(InvalidRequestError):
            registry.register(*bad, None)
    registry.unregister("mcp::calc")
    with pytest.raises(NotFoundError):
        registry.get("mcp::calc")


def test_builtin_groups_unregister_until_registered_again(db):
    from serve.config import WebSearchConfig

    registry = ToolGroupRegistry(db, WebSearchConfig(provider="tavily"))
    assert [g["identifier"] for g in registry.list()] == ["builtin::rag", "builtin::websearch"]
    assert registry.get("builtin::websearch")["provider_id"] == "tavily-search"
    registry.unregister("builtin::websearch")  # what Llama Stack's own test does on a default distribution
    restarted = ToolGroupRegistry(db, WebSearchConfig(provider="tavily"))  # another replica, or a restart
    for r in (registry, restarted):
        assert [g["identifier"] for g in r.list()] == ["builtin::rag"]
        with pytest.raises(NotFoundError):
            r.get("builtin::websearch")
    with pytest.raises(NotFoundError):
        registry.unregister("builtin::websearch")  # already gone
    with pytest.raises(InvalidRequestError, match="provider_id 'tavily-search'"):
        registry.register("builtin::websearch", "brave-search", None, None)
    restarted.register("builtin::websearch", "tavily-search", None, None)
    assert registry.get("builtin::websearch")["provider_id"] == "tavily-search"
    registry.register("builtin::websearch", "tavily-search", None, None)  # registered already: a no-op
    registry.unregister("builtin::rag")
    assert [g["identifier"] for g in restarted.list()] == ["builtin::websearch"]
    registry.register("builtin::rag", "rag-runtime", None, None)
    assert [g["identifier"] for g in restarted.list()] == ["builtin::rag", "builtin::websearch"]


def test_runtime_against_a_local_mcp_server(registry, mcp_server_url):
    runtime = ToolRuntime(registry, vector_io=None)
    registry.register("mcp::test", "model-context-protocol", mcp_server_url, None)
    tools = asyncio.run(runtime.list_tools("mcp::test"))
    assert [t["identifier"] for t in tools] == ["add", "lookup_capital", "explode"]
    add = Tool.model_validate(tools[0])
    assert add.toolgroup_id == "mcp::test" and [(p.name, p.parameter_type) for p in add.parameters] == [
        ("a", "integer"), ("b", "integer")]
    assert asyncio.run(runtime.invoke("add", {"a": 2, "b": 40}))["content"] == [{"type": "text", "text": "42"}]
    capital = asyncio.run(runtime.invoke("lookup_capital", {"country": "Japan"}))
    assert capital["content"][0]["text"] == "Tokyo" and capital["error_code"] is None
    failed = asyncio.run(runtime.invoke("explode", {"reason": "always fails"}))
    assert failed["error_code"] == 1 and "always fails" in failed["error_message"]
    with pytest.raises(NotFoundError):
        asyncio.run(runtime.invoke("no_such_tool", {}))
    with pytest.raises(InvalidRequestError):
        asyncio.run(runtime.invoke("knowledge_search", {"query": "bees"}))  # no vector_db_ids
    dead = "http://127.0.0.1:1/mcp"  # nothing listens on port 1
    with pytest.raises(FailedDependencyError):
        asyncio.run(runtime.list_runtime_tools(None, dead))
    registry.register("mcp::dead", "model-context-protocol", dead, None)
    with pytest.raises(FailedDependencyError):
        asyncio.run(runtime.list_tools("mcp::dead"))
    everything = asyncio.run(runtime.list_tools())  # a dead server does not hide the others' tools
    assert {"knowledge_search", "add"} <= {t["identifier"] for t in everything}


def test_agent_store_and_offset_pagination(db):
    store = AgentStore(db)
    agent = store.create_agent({"model": "m", "instructions": "x"})["agent_id"]
    sessions = [store.create_session(agent, f"s{i}")["session_id"] for i in range(3)]
    page = store.list_sessions(agent, 1, 1)
    assert [s["session_id"] for s in page["data"]] == [sessions[1]] and page["has_more"]
    assert paginate_records([{"id": 1}], None, None) == {"data": [{"id": 1}], "has_more": False, "url": None}
    turn = {"turn_id": "t1", "session_id": sessions[0], "input_messages": [], "steps": [], "started_at": now_iso(),
            "output_message": {"role": "assistant", "content": "", "stop_reason": "end_of_message",
                               "tool_calls": []}}
    store.save_turn(turn, [{"call_id": "c1", "tool_name": "f", "arguments": {}}])
    assert store.pending_turn(agent, sessions[0], "t1")[1][0]["call_id"] == "c1"
    store.save_turn(turn, None)
    assert store.pending_turn(agent, sessions[0], "t1")[1] == []
    with pytest.raises(NotFoundError):
        store.get_session(agent, "nope")
    store.delete_agent(agent)
    with pytest.raises(NotFoundError):
        store.get_agent(agent)


RAG = {"name": "builtin::rag/knowledge_search", "args": {"vector_db_ids": ["kb"], "query_config": {"max_chunks": 3}}}


def test_agent_config_to_responses_tools():
    groups = {"builtin::rag": {"identifier": "builtin::rag"},
              "mcp::calc": {"identifier": "mcp::calc", "mcp_endpoint": {"uri": "http://h/mcp"}}}
    config = AgentConfig(model="m", instructions="", toolgroups=[RAG, "mcp::calc/add"], client_tools=[
        {"name": "get_weather", "description": "Weather", "parameters": [
            {"name": "city", "parameter_type": "str", "description": "City", "required": True},
            {"name": "days", "parameter_type": "int", "description": "Days", "required": False}]}])
    tools = agent_tools(config, None, groups)
    assert tools[0] == {"type": "file_search", "vector_store_ids": ["kb"], "max_num_results": 3}
    assert tools[1]["type"] == "mcp" and tools[1]["allowed_tools"] == ["add"] and ":" not in tools[1]["server_label"]
    assert tools[2]["parameters"] == {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "City"}, "days": {"type": "integer", "description": "Days"}}}
    assert tool_choice(config.model_copy(update={"tool_choice": "knowledge_search"}), None, tools) == {
        "type": "file_search"}
    assert tool_choice(config.model_copy(update={"tool_choice": "get_weather"}), None, tools)["name"] == "get_weather"
    with pytest.raises(InvalidRequestError):
        tool_choice(config.model_copy(update={"tool_choice": "teleport"}), None, tools)
    with pytest.raises(NotFoundError):
        agent_tools(AgentConfig(model="m", instructions="", toolgroups=["mcp::gone"]), None, groups)
    with pytest.raises(InvalidRequestError):  # builtin::rag without vector DBs
        agent_tools(AgentConfig(model="m", instructions="", toolgroups=["builtin::rag"]), None, groups)
    assert sampling(None) == {"temperature": 0.0}
    assert sampling({"strategy": {"type": "top_p", "temperature": 0.7, "top_p": 0.9}, "max_tokens": 64}) == {
        "temperature": 0.7, "top_p": 0.9, "max_output_tokens": 64}


def _events(*items_and_deltas, end="response.completed", reason=None):
    out = []
    for x in items_and_deltas:
        if isinstance(x, str):
            out.append({"type": "response.output_text.delta", "delta": x})
        else:
            out.append({"type": "response.output_item.done", "item": x})
    out.append({"type": end, "response": {"incomplete_details": {"reason": reason} if reason else None}})
    return out


SEARCH = {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["how do bees talk"],
          "results": [{"file_id": "honeybees.md", "filename": "", "score": 0.8, "text": "waggle dance"}]}


def _answer(text):
    return {"type": "message", "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _translate(events):
    ev = TurnEvents("turn-1")
    chunks = [c for e in events for c in ev.feed(e)]
    for c in chunks:
        AgentTurnResponseStreamChunk.model_validate(c)
    return ev, chunks


def test_events_server_tool_then_answer():
    ev, chunks = _translate(_events(SEARCH, "Bees ", "dance.", _answer("Bees dance.")))
    kinds = [(c["event"]["payload"]["event_type"], c["event"]["payload"].get("step_type")) for c in chunks]
    assert kinds == [("step_start", "inference"), ("step_progress", "inference"), ("step_complete", "inference"),
                     ("step_start", "tool_execution"), ("step_progress", "tool_execution"),
                     ("step_complete", "tool_execution"), ("step_start", "inference"),
                     ("step_progress", "inference"), ("step_progress", "inference"), ("step_complete", "inference")]
    tool_step = ev.steps[1]
    assert tool_step["tool_calls"][0]["tool_name"] == "knowledge_search"
    assert tool_step["tool_responses"][0]["metadata"]["document_ids"] == ["honeybees.md"]
    assert ev.output_message == {"role": "assistant", "content": "Bees dance.", "stop_reason": "end_of_turn",
                                 "tool_calls": []}
    turn = {"turn_id": "turn-1", "session_id": "s", "input_messages": [{"role": "user", "content": "bees?"}],
            "steps": ev.steps, "output_message": ev.output_message, "started_at": now_iso(),
            "completed_at": now_iso()}
    Turn.model_validate(turn)
    AgentTurnResponseStreamChunk.model_validate(chunk({"event_type": "turn_complete", "turn": turn}))
    # the stored turn becomes history the model sees: the question, the call, its result, the answer
    messages = to_chat_messages(normalize_input(turn_items(turn)))
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "knowledge_search"
    assert "waggle dance" in messages[2]["content"] and messages[3]["content"] == "Bees dance."


def test_events_client_tool_awaits_input_and_refusal_and_length():
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
            "arguments": json.dumps({"city": "Oslo"})}
    ev, _ = _translate(_events(call))
    assert ev.pending[0]["arguments"] == {"city": "Oslo"}
    assert ev.output_message["stop_reason"] == "end_of_message" and ev.output_message["tool_calls"]
    ev, chunks = _translate(_events({"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}))
    assert ev.steps[0]["step_type"] == "shield_call" and ev.steps[0]["violation"]["user_message"] == "No."
    assert ev.output_message["content"] == "No."
    ev, _ = _translate(_events("cut", _answer("cut"), end="response.incomplete", reason="max_output_tokens"))
    assert ev.output_message["stop_reason"] == "out_of_tokens"
    failed_mcp = {"type": "mcp_call", "id": "mcp_1", "server_label": "calc", "name": "explode", "arguments": "{}",
                  "output": None, "error": {"type": "mcp_tool_execution_error", "content": "exploded: x"}}
    ev, _ = _translate(_events(failed_mcp, _answer("It failed.")))
    assert ev.steps[1]["tool_calls"][0]["tool_name"] == "explode"
    assert ev.steps[1]["tool_responses"][0]["content"] == "exploded: x"


def test_events_report_passing_shields_as_shield_call_steps():
    ev = TurnEvents("turn-1", input_shields=True, output_shields=True)
    chunks = [c for e in _events("Hi ", "there.", _answer("Hi there.")) for c in ev.feed(e)]
    for c in chunks:
        AgentTurnResponseStreamChunk.model_validate(c)
    assert [(s["step_type"], s.get("violation")) for s in ev.steps] == [
        ("shield_call", None), ("inference", None), ("shield_call", None)]
    refused = TurnEvents("turn-2", input_shields=True, output_shields=True)
    for e in _events({"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}):
        refused.feed(e)
    assert [s["step_type"] for s in refused.steps] == ["shield_call"]  # the violation, and nothing passed
    assert refused.steps[0]["violation"]["user_message"] == "No."
