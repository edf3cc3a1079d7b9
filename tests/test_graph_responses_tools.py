"""Hosted tools in the Responses loop through the graph: MCP servers, web search, background responses.

The tool servers are real (tests/tool_servers.py on loopback); forced tool choices make the models call them.
Where only the machinery is under test the tiny random model drives it (its arguments are still grammar-valid).
"""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai import OpenAI

from tests.conftest import GUARD_TINY, SMOLLM2
from tests.tool_servers import CAPITALS, PAGES, SEARCH_KEY

pytestmark = pytest.mark.graph


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0, timeout=120)


def _mcp(url: str, **extra) -> dict:
    return {"type": "mcp", "server_label": "tools", "server_url": url, **extra}


def test_mcp_call(client, mcp_server_url):
    r = client.responses.create(
        model=SMOLLM2, input="What is the capital of France? Look it up.", temperature=0, max_output_tokens=60,
        tools=[_mcp(mcp_server_url, allowed_tools=["lookup_capital", "add"])],
        tool_choice={"type": "mcp", "server_label": "tools", "name": "lookup_capital"})
    listed = next(o for o in r.output if o.type == "mcp_list_tools")
    assert sorted(t.name for t in listed.tools) == ["add", "lookup_capital"]  # allowed_tools filters
    assert listed.tools[0].input_schema["type"] == "object"
    call = next(o for o in r.output if o.type == "mcp_call")
    country = json.loads(call.arguments)["country"]
    assert call.name == "lookup_capital" and call.server_label == "tools" and call.error is None
    assert call.output == CAPITALS.get(country.strip().lower(), f"unknown country: {country}")
    assert r.output[-1].type == "message"
    # the stored response holds the same items
    assert [o.type for o in client.responses.retrieve(r.id).output] == [o.type for o in r.output]


def test_mcp_streamed_events(client, mcp_server_url):
    events = list(client.responses.create(  # each event parsed into the SDK's typed event models
        model=GUARD_TINY, input="Add 2 and 3.", max_output_tokens=40, stream=True,
        tools=[_mcp(mcp_server_url, allowed_tools=["add"])], tool_choice="required"))
    final = events[-1].response  # incomplete: the random model talks until max_output_tokens
    types = [e.type for e in events]
    order = ["response.mcp_list_tools.in_progress", "response.mcp_list_tools.completed",
             "response.mcp_call.in_progress", "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
             "response.mcp_call.completed"]
    assert [t for t in types if t in order] == order
    call = next(o for o in final.output if o.type == "mcp_call")
    args = json.loads(call.arguments)
    assert call.output == str(args["a"] + args["b"])


def test_mcp_failures_become_items(client, mcp_server_url):
    r = client.responses.create(model=GUARD_TINY, input="Blow up.", max_output_tokens=40,
                                tools=[_mcp(mcp_server_url, allowed_tools=["explode"])], tool_choice="required")
    call = next(o for o in r.output if o.type == "mcp_call")
    assert call.status == "failed" and "exploded" in str(call.error)
    assert r.status in ("completed", "incomplete")
    down = client.responses.create(model=GUARD_TINY, input="hi", max_output_tokens=5,
                                   tools=[_mcp("http://127.0.0.1:9/mcp", server_label="down")])
    listed = next(o for o in down.output if o.type == "mcp_list_tools")
    assert listed.error and not listed.tools  # an unreachable server: the model goes on without its tools
    assert down.output[-1].type == "message"


def test_mcp_approval(client, mcp_server_url):
    tools = [_mcp(mcp_server_url, allowed_tools=["add"], require_approval="always")]
    r = client.responses.create(model=GUARD_TINY, input="Add 20 and 22.", max_output_tokens=40, tools=tools,
                                tool_choice="required")
    request = next(o for o in r.output if o.type == "mcp_approval_request")
    assert request.name == "add" and not [o for o in r.output if o.type == "mcp_call"]
    approved = client.responses.create(
        model=GUARD_TINY, previous_response_id=r.id, tools=tools, max_output_tokens=5,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}])
    call = next(o for o in approved.output if o.type == "mcp_call")
    args = json.loads(request.arguments)
    assert call.approval_request_id == request.id and call.output == str(args["a"] + args["b"])
    denied = client.responses.create(
        model=GUARD_TINY, previous_response_id=r.id, tools=tools, max_output_tokens=5,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False}])
    assert not [o for o in denied.output if o.type == "mcp_call"]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=GUARD_TINY, previous_response_id=r.id, tools=tools,
                                input=[{"type": "mcp_approval_response", "approval_request_id": "mcpr_nope",
                                        "approve": True}])


def test_web_search(client, web_search_requests):
    before = len(web_search_requests)
    r = client.responses.create(model=SMOLLM2, input="How do honeybees tell each other where flowers are?",
                                max_output_tokens=80, temperature=0, tools=[{"type": "web_search"}],
                                tool_choice="required")
    search = next(o for o in r.output if o.type == "web_search_call")
    assert search.status == "completed" and search.action.query
    sent = web_search_requests[before:]
    assert sent and sent[0]["token"] == SEARCH_KEY and sent[0]["q"] == search.action.query
    urls = {p["url"] for p in PAGES}
    assert {s.url for s in search.action.sources} <= urls and search.action.sources
    cited = [a for a in r.output[-1].content[0].annotations if a.type == "url_citation"]
    assert cited and {a.url for a in cited} == {s.url for s in search.action.sources}


def test_background_and_cancel(client):
    r = client.responses.create(model=SMOLLM2, input="Count from one to five.", max_output_tokens=20,
                                background=True)
    assert r.status in ("queued", "in_progress") and r.background
    deadline = time.time() + 120
    while client.responses.retrieve(r.id).status in ("queued", "in_progress") and time.time() < deadline:
        time.sleep(0.3)
    done = client.responses.retrieve(r.id)
    assert done.status in ("completed", "incomplete") and done.output_text
    # a long one, cancelled while it runs: it stays cancelled and stops generating
    long = client.responses.create(model=GUARD_TINY, input="Ramble.", max_output_tokens=1500, background=True)
    time.sleep(1.0)
    assert client.responses.cancel(long.id).status == "cancelled"
    time.sleep(1.5)
    after = client.responses.retrieve(long.id)
    assert after.status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2, input="x", background=True, store=False)


def test_background_run_of_a_dead_replica_fails_instead_of_running_forever(client):
    """Kill the Agents replica while a background response runs: once its lease (3 s here) lapses, the restarted
    replica marks it failed with a server_error; new background responses run again."""
    import ray

    long = client.responses.create(model=GUARD_TINY, input="Ramble.", max_output_tokens=1500, background=True)
    deadline = time.time() + 60
    while client.responses.retrieve(long.id).status == "queued":
        assert time.time() < deadline
        time.sleep(0.2)
    names = [a for a in ray.util.list_named_actors(all_namespaces=True)
             if "#Agents#" in a["name"] and "stackserve" in a["name"]]
    assert len(names) == 1
    ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=True)
    deadline, status = time.time() + 180, "in_progress"
    while status in ("queued", "in_progress"):
        assert time.time() < deadline, "the orphaned response stayed in progress"
        time.sleep(0.5)
        try:
            got = client.responses.retrieve(long.id)
            status = got.status
        except (openai.InternalServerError, openai.APIConnectionError):
            continue  # no Agents replica yet
    assert status == "failed" and got.error.code == "server_error"
    again = client.responses.create(model=GUARD_TINY, input="Hi.", max_output_tokens=4, background=True)
    deadline = time.time() + 120
    while client.responses.retrieve(again.id).status in ("queued", "in_progress"):
        assert time.time() < deadline
        time.sleep(0.3)
    assert client.responses.retrieve(again.id).status in ("completed", "incomplete")


def test_bad_tool_input(client):
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2, input="x", tools=[{"type": "mcp", "server_label": "a"}])
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2, input="x",
                                tools=[{"type": "mcp", "server_label": "a", "server_url": "ftp://x"}])
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2, input="x", tools=[
            {"type": "mcp", "server_label": "a", "server_url": "http://x"},
            {"type": "mcp", "server_label": "a", "server_url": "http://y"}])
