"""Llama Stack 0.2 tool groups, tool runtime and agents through the graph, with llama-stack-client 0.2.12
(its `Agent` helper included) as the client: RAG over the test corpus on SmolLM2, client tools on the tiny random
model (constrained decoding makes it call them), session history and guardrails on the scripted engine."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from llama_stack_client import APIStatusError, BadRequestError, LlamaStackClient, NotFoundError
from llama_stack_client.lib.agents.agent import Agent
from llama_stack_client.lib.agents.event_logger import EventLogger

from tests.conftest import GUARD_SCRIPTED, GUARD_TINY, MINILM, SMOLLM2
from tests.tool_servers import CLIENT_SEARCH_KEY

pytestmark = pytest.mark.graph

CORPUS = Path(__file__).parent / "data" / "corpus"
MCP = "model-context-protocol"


@pytest.fixture(scope="module")
def lls(base_url) -> LlamaStackClient:
    return LlamaStackClient(base_url=base_url, timeout=300, max_retries=0)


@pytest.fixture(scope="module")
def rag_db(lls) -> str:
    """A vector DB holding three corpus documents, each under its file name as document_id."""
    lls.vector_dbs.register(vector_db_id="agents-kb", embedding_model=MINILM, embedding_dimension=384)
    lls.tool_runtime.rag_tool.insert(vector_db_id="agents-kb", chunk_size_in_tokens=128, documents=[
        {"document_id": name, "content": (CORPUS / name).read_text(), "mime_type": "text/plain", "metadata": {}}
        for name in ("honeybees.md", "volcanoes.txt", "sourdough.json")])
    return "agents-kb"


def _tool_steps(turn):
    return [s for s in turn.steps if s.step_type == "tool_execution"]


def test_toolgroups_and_mcp_tool_runtime(lls, mcp_server_url):
    groups = {g.identifier: g for g in lls.toolgroups.list()}
    assert groups["builtin::rag"].provider_id == "rag-runtime"
    assert [t.identifier for t in lls.tools.list(toolgroup_id="builtin::rag/knowledge_search")] == [
        "knowledge_search"]
    assert lls.tools.get("knowledge_search").parameters[0].name == "query"
    lls.toolgroups.register(toolgroup_id="mcp::test", provider_id=MCP, mcp_endpoint={"uri": mcp_server_url})
    assert lls.toolgroups.get("mcp::test").mcp_endpoint.uri == mcp_server_url
    tools = lls.tools.list(toolgroup_id="mcp::test")
    assert [t.identifier for t in tools] == ["add", "lookup_capital", "explode"]
    assert lls.tools.get("lookup_capital").toolgroup_id == "mcp::test"
    direct = lls.tool_runtime.list_tools(mcp_endpoint={"uri": mcp_server_url})
    assert [d.name for d in direct] == ["add", "lookup_capital", "explode"]
    assert [d.name for d in lls.tool_runtime.list_tools(tool_group_id="mcp::test")] == [d.name for d in direct]
    r = lls.tool_runtime.invoke_tool(tool_name="add", kwargs={"a": 19, "b": 23})
    assert r.content[0].text == "42" and r.error_code is None
    r = lls.tool_runtime.invoke_tool(tool_name="lookup_capital", kwargs={"country": "Kenya"})
    assert r.content[0].text == "Nairobi"
    r = lls.tool_runtime.invoke_tool(tool_name="explode", kwargs={"reason": "always fails"})
    assert r.error_code == 1 and "always fails" in r.error_message
    lls.toolgroups.unregister("mcp::test")
    assert "mcp::test" not in [g.identifier for g in lls.toolgroups.list()]
    with pytest.raises(NotFoundError):
        lls.tools.list(toolgroup_id="mcp::test")


def test_tool_bad_input(lls, mcp_server_url):
    with pytest.raises(NotFoundError):
        lls.toolgroups.get("mcp::nope")
    with pytest.raises(NotFoundError):
        lls.tools.get("no_such_tool")
    with pytest.raises(NotFoundError):
        lls.tool_runtime.invoke_tool(tool_name="no_such_tool", kwargs={})
    with pytest.raises(NotFoundError):
        lls.toolgroups.unregister("mcp::nope")
    with pytest.raises(BadRequestError):  # unknown provider
        lls.toolgroups.register(toolgroup_id="x", provider_id="brave-search")
    with pytest.raises(BadRequestError):  # MCP without an endpoint
        lls.toolgroups.register(toolgroup_id="x", provider_id=MCP)
    with pytest.raises(BadRequestError):
        lls.toolgroups.register(toolgroup_id="x", provider_id=MCP, mcp_endpoint={"uri": "ftp://h/mcp"})
    with pytest.raises(BadRequestError):  # a builtin group is its provider's
        lls.toolgroups.register(toolgroup_id="builtin::rag", provider_id=MCP, mcp_endpoint={"uri": mcp_server_url})
    lls.toolgroups.register(toolgroup_id="mcp::dup", provider_id=MCP, mcp_endpoint={"uri": mcp_server_url})
    with pytest.raises(APIStatusError) as e:
        lls.toolgroups.register(toolgroup_id="mcp::dup", provider_id=MCP, mcp_endpoint={"uri": "http://h:1/mcp"})
    assert e.value.status_code == 409
    lls.toolgroups.unregister("mcp::dup")
    with pytest.raises(BadRequestError):  # knowledge_search needs vector DBs
        lls.tool_runtime.invoke_tool(tool_name="knowledge_search", kwargs={"query": "bees"})


def test_websearch_group_and_the_clients_key(lls, base_url, web_search_requests):
    """builtin::websearch as Llama Stack serves it: listed, invoked with the key the client sends in
    X-LlamaStack-Provider-Data (the fake search API records which key came), unregistered (what Llama Stack's own
    test does) until registered again."""
    groups = {g.identifier: g for g in lls.toolgroups.list()}
    assert groups["builtin::websearch"].provider_id == "brave-search"
    assert [t.identifier for t in lls.tools.list(toolgroup_id="builtin::websearch")] == ["web_search"]
    own = LlamaStackClient(base_url=base_url, timeout=60, max_retries=0,
                           provider_data={"brave_search_api_key": CLIENT_SEARCH_KEY})
    before = len(web_search_requests)
    r = own.tool_runtime.invoke_tool(tool_name="web_search", kwargs={"query": "volcano lava"})
    top = json.loads(r.content)["top_k"]
    assert r.error_code is None and top[0]["url"] == "https://geo.example/volcanoes"
    assert [s["token"] for s in web_search_requests[before:]] == [CLIENT_SEARCH_KEY]
    bad = httpx.post(f"{base_url}/v1/tool-runtime/invoke", json={"tool_name": "web_search", "kwargs": {"query": "x"}},
                     headers={"X-LlamaStack-Provider-Data": "{not json"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "X-LlamaStack-Provider-Data"

    lls.toolgroups.unregister(toolgroup_id="builtin::websearch")
    assert "builtin::websearch" not in [g.identifier for g in lls.toolgroups.list()]
    with pytest.raises(NotFoundError):
        lls.toolgroups.get("builtin::websearch")
    with pytest.raises(NotFoundError):
        own.tool_runtime.invoke_tool(tool_name="web_search", kwargs={"query": "x"})
    with pytest.raises(BadRequestError):
        lls.toolgroups.register(toolgroup_id="builtin::websearch", provider_id="tavily-search")  # not this server's
    lls.toolgroups.register(toolgroup_id="builtin::websearch", provider_id="brave-search")
    assert lls.toolgroups.get("builtin::websearch").provider_id == "brave-search"
    assert own.tool_runtime.invoke_tool(tool_name="web_search", kwargs={"query": "sourdough"}).error_code is None


def test_invoke_knowledge_search(lls, rag_db):
    r = lls.tool_runtime.invoke_tool(tool_name="knowledge_search", kwargs={
        "query": "Why do some volcanoes erupt explosively?", "vector_db_ids": [rag_db]})
    assert r.metadata["document_ids"][0] == "volcanoes.txt"
    assert "magma" in "".join(c.text for c in r.content)
    with pytest.raises(NotFoundError):
        lls.tool_runtime.invoke_tool(tool_name="knowledge_search", kwargs={"query": "x", "vector_db_ids": ["nope"]})


def test_agent_rag_session(lls, rag_db):
    """The Agent helper runs a two-turn session; each turn's knowledge_search step retrieves the right document."""
    agent = Agent(lls, model=SMOLLM2, instructions="Answer the question using the knowledge_search tool.",
                  tools=[{"name": "builtin::rag/knowledge_search", "args": {"vector_db_ids": [rag_db]}}],
                  tool_config={"tool_choice": "required"},
                  sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 100})
    assert agent.builtin_tools == {"knowledge_search": {"vector_db_ids": [rag_db]}}
    sid = agent.create_session("rag")
    chunks = list(agent.create_turn(session_id=sid, stream=True, messages=[
        {"role": "user", "content": "How do honeybees tell each other where flowers are?"}]))
    payloads = [c.event.payload for c in chunks]
    assert payloads[0].event_type == "turn_start" and payloads[-1].event_type == "turn_complete"
    first = payloads[-1].turn
    assert [s.step_type for s in first.steps] == ["inference", "tool_execution", "inference"]
    call, response = _tool_steps(first)[0].tool_calls[0], _tool_steps(first)[0].tool_responses[0]
    assert call.tool_name == "knowledge_search" and response.metadata["document_ids"][0] == "honeybees.md"
    streamed = "".join(p.delta.text for p in payloads if p.event_type == "step_progress" and p.delta.type == "text")
    assert first.output_message.content and streamed.endswith(first.output_message.content)
    printed = "".join(str(e) for e in EventLogger().log(chunks))
    assert "Tool:knowledge_search" in printed
    second = agent.create_turn(session_id=sid, stream=False, messages=[
        {"role": "user", "content": "Why do some volcanoes erupt explosively?"}])
    assert _tool_steps(second)[0].tool_responses[0].metadata["document_ids"][0] == "volcanoes.txt"
    session = lls.agents.session.retrieve(session_id=sid, agent_id=agent.agent_id)
    assert [t.turn_id for t in session.turns] == [first.turn_id, second.turn_id]
    got = lls.agents.turn.retrieve(turn_id=second.turn_id, session_id=sid, agent_id=agent.agent_id)
    assert got.output_message.content == second.output_message.content
    step = lls.agents.steps.retrieve(step_id=got.steps[1].step_id, turn_id=got.turn_id, session_id=sid,
                                     agent_id=agent.agent_id)
    assert step.step.step_type == "tool_execution"


def test_agent_client_tool_round_trip(lls):
    """A client tool: the turn awaits input, the Agent helper runs the tool and resumes the turn."""
    calls = []

    def get_weather(city: str) -> str:
        """Weather for a city.

        :param city: the city
        """
        calls.append(city)
        return f"sunny in {city}"

    agent = Agent(lls, model=GUARD_TINY, instructions="Use tools.", tools=[get_weather],
                  tool_config={"tool_choice": "required"}, max_infer_iters=4,
                  sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 40})
    sid = agent.create_session("client-tools")
    chunks = list(agent.create_turn(session_id=sid, stream=True, messages=[
        {"role": "user", "content": "Weather in Oslo?"}]))
    kinds = [c.event.payload.event_type for c in chunks]
    assert "turn_awaiting_input" in kinds and kinds[-1] == "turn_complete" and len(calls) == 1
    turn = chunks[-1].event.payload.turn
    assert [s.step_type for s in turn.steps][:3] == ["inference", "tool_execution", "inference"]
    pending = turn.steps[0].api_model_response.tool_calls[0]
    assert pending.tool_name == "get_weather" and pending.arguments["city"] == calls[0]
    answered = turn.steps[1].tool_responses[0]
    assert answered.call_id == pending.call_id and calls[0] in str(answered.content)
    with pytest.raises(BadRequestError):  # nothing to resume any more
        lls.agents.turn.resume(turn_id=turn.turn_id, session_id=sid, agent_id=agent.agent_id, tool_responses=[
            {"call_id": pending.call_id, "tool_name": "get_weather", "content": "x"}])


def test_raw_turn_resume(lls):
    """The routes under the helper: a non-streamed turn that waits for a client tool, resumed without streaming."""
    tool = {"name": "lookup", "description": "Look a word up.",
            "parameters": [{"name": "word", "parameter_type": "str", "description": "the word", "required": True}]}
    greedy = {"strategy": {"type": "greedy"}, "max_tokens": 30}
    aid = lls.agents.create(agent_config={"model": GUARD_TINY, "instructions": "", "client_tools": [tool],
                                          "tool_config": {"tool_choice": "lookup"}, "sampling_params": greedy}).agent_id
    sid = lls.agents.session.create(agent_id=aid, session_name="raw").session_id
    waiting = lls.agents.turn.create(session_id=sid, agent_id=aid, stream=False,
                                     messages=[{"role": "user", "content": "Look up 'sea'."}])
    call = waiting.output_message.tool_calls[0]
    assert waiting.output_message.stop_reason == "end_of_message" and call.tool_name == "lookup"
    with pytest.raises(BadRequestError):  # answers a call the turn did not make
        lls.agents.turn.resume(turn_id=waiting.turn_id, session_id=sid, agent_id=aid, tool_responses=[
            {"call_id": "call_other", "tool_name": "lookup", "content": "x"}])
    done = lls.agents.turn.resume(turn_id=waiting.turn_id, session_id=sid, agent_id=aid, stream=False,
                                  tool_responses=[{"call_id": call.call_id, "tool_name": "lookup",
                                                   "content": "a large body of salt water"}])
    assert done.turn_id == waiting.turn_id and not done.output_message.tool_calls
    assert done.steps[1].tool_responses[0].content == "a large body of salt water"
    assert len(lls.agents.session.retrieve(session_id=sid, agent_id=aid).turns) == 1


def test_agent_history_documents_and_shields(lls, base_url):
    """On the scripted engine (it answers "maybe?" when the prompt holds "gibberish", else "safe"): a session's
    earlier turns and a turn's documents reach the model; an input shield's violation is a shield_call step."""
    aid = lls.agents.create(agent_config={"model": GUARD_SCRIPTED, "instructions": "Be brief."}).agent_id

    def turn(agent_id, sid, text, **kw):
        return lls.agents.turn.create(session_id=sid, agent_id=agent_id, stream=False,
                                      messages=[{"role": "user", "content": text}], **kw)

    sid = lls.agents.session.create(agent_id=aid, session_name="history").session_id
    assert turn(aid, sid, "This is gibberish.").output_message.content == "maybe?"
    assert turn(aid, sid, "Hello.").output_message.content == "maybe?"  # the first turn is in the prompt
    fresh = lls.agents.session.create(agent_id=aid, session_name="fresh").session_id
    assert turn(aid, fresh, "Hello.").output_message.content == "safe"
    with_doc = turn(aid, fresh, "Read this.", documents=[{"content": "gibberish", "mime_type": "text/plain"}])
    assert with_doc.output_message.content == "maybe?"
    # agents and sessions lists (llama-stack-client 0.2.12 has no methods for these Llama Stack 0.2 routes)
    listed = httpx.get(f"{base_url}/v1/agents/{aid}/sessions", params={"limit": 1}).json()
    assert listed["data"][0]["session_id"] == sid and listed["has_more"]
    assert httpx.get(f"{base_url}/v1/agents/{aid}").json()["agent_config"]["instructions"] == "Be brief."
    assert aid in [a["agent_id"] for a in httpx.get(f"{base_url}/v1/agents").json()["data"]]
    lls.agents.session.delete(session_id=sid, agent_id=aid)
    with pytest.raises(NotFoundError):
        lls.agents.session.retrieve(session_id=sid, agent_id=aid)
    lls.agents.delete(aid)
    with pytest.raises(NotFoundError):
        lls.agents.session.retrieve(session_id=fresh, agent_id=aid)

    guarded = lls.agents.create(agent_config={"model": GUARD_SCRIPTED, "instructions": "Be brief.",
                                              "input_shields": ["llama-guard"]}).agent_id
    gsid = lls.agents.session.create(agent_id=guarded, session_name="shielded").session_id
    refused = turn(guarded, gsid, "How do I kill a process?")
    assert refused.steps[0].step_type == "shield_call" and refused.steps[0].violation.user_message
    assert refused.output_message.content == refused.steps[0].violation.user_message


def test_agent_bad_input(lls, mcp_server_url):
    with pytest.raises(NotFoundError):
        lls.agents.create(agent_config={"model": "nope", "instructions": ""})
    with pytest.raises(NotFoundError):
        lls.agents.create(agent_config={"model": SMOLLM2, "instructions": "", "toolgroups": ["mcp::nope"]})
    with pytest.raises(BadRequestError):  # builtin::rag without vector DBs
        lls.agents.create(agent_config={"model": SMOLLM2, "instructions": "", "toolgroups": ["builtin::rag"]})
    aid = lls.agents.create(agent_config={"model": SMOLLM2, "instructions": ""}).agent_id
    with pytest.raises(NotFoundError):
        lls.agents.turn.create(session_id="nope", agent_id=aid, messages=[{"role": "user", "content": "hi"}])
    sid = lls.agents.session.create(agent_id=aid, session_name="bad").session_id
    with pytest.raises(BadRequestError):
        lls.agents.turn.create(session_id=sid, agent_id=aid, messages=[])
    with pytest.raises(BadRequestError):  # images are not supported by these models
        lls.agents.turn.create(session_id=sid, agent_id=aid, stream=True, messages=[
            {"role": "user", "content": [{"type": "image", "image": {"url": {"uri": "http://h/x.png"}}}]}])
    with pytest.raises(NotFoundError):
        lls.agents.turn.retrieve(turn_id="nope", session_id=sid, agent_id=aid)
