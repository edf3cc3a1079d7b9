"""Unit tests of the hosted tools' rules: web search set-up errors and keys (the request's own, the config's, the
environment's), the tool runtime's web_search against a local search API, MCP approval and allow-lists."""

from __future__ import annotations

import asyncio
import json

import pytest

from deployments.agents.hosted_tools import HostedTools, McpTool
from deployments.agents.tools.web_search import make_web_search
from serve.config import WebSearchConfig
from serve.errors import InvalidRequestError
from serve.protocol.provider_data import HEADER, ProviderData, parse_provider_data, provider_data_of
from tests.tool_servers import CLIENT_SEARCH_KEY, SEARCH_KEY, LoopbackServer, web_search_app

KEY_ENV = ("TAVILY_API_KEY", "TAVILY_SEARCH_API_KEY", "BRAVE_API_KEY", "BRAVE_SEARCH_API_KEY")


@pytest.fixture
def no_key_env(monkeypatch):
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_web_search_needs_config_and_key(no_key_env):
    with pytest.raises(InvalidRequestError) as e:
        make_web_search(None)
    assert e.value.status_code == 400 and "agents.web_search" in e.value.message
    with pytest.raises(InvalidRequestError) as e:
        make_web_search(WebSearchConfig(provider="tavily"))
    assert e.value.status_code == 400
    assert all(s in e.value.message for s in ("TAVILY_API_KEY", "tavily_search_api_key", HEADER))
    no_key_env.setenv("TAVILY_SEARCH_API_KEY", "llama-stack-env")  # Llama Stack's variable works too
    assert make_web_search(WebSearchConfig(provider="tavily")).api_key == "llama-stack-env"
    no_key_env.setenv("TAVILY_API_KEY", "k")
    assert make_web_search(WebSearchConfig(provider="tavily")).api_key == "k"
    assert make_web_search(WebSearchConfig(provider="tavily", api_key="cfg")).api_key == "cfg"
    own = ProviderData(tavily_search_api_key="mine", brave_search_api_key="other")
    assert make_web_search(WebSearchConfig(provider="tavily", api_key="cfg"), own).api_key == "mine"
    assert make_web_search(WebSearchConfig(provider="brave"), own).api_key == "other"


def test_provider_data_header():
    assert parse_provider_data(None) is None and parse_provider_data(" ") is None
    data = provider_data_of({HEADER: json.dumps({"tavily_search_api_key": "tv-secret", "fireworks_api_key": "f"})})
    assert data.search_key("tavily") == "tv-secret" and data.search_key("brave") is None
    assert "tv-secret" not in repr(data) and "tv-secret" not in str(data)  # keys stay out of logs
    for bad in ("{not json", "[1]", '{"tavily_search_api_key": 5}'):
        with pytest.raises(InvalidRequestError) as e:
            parse_provider_data(bad)
        assert e.value.param == HEADER and e.value.status_code == 400


def test_runtime_web_search_with_the_clients_key(no_key_env, tmp_path):
    """builtin::websearch through the tool runtime: Llama Stack's result shape, the client's key when sent."""
    import deployments.agents.llama_tables  # noqa: F401
    from deployments.agents.tool_runtime import ToolRuntime
    from deployments.agents.toolgroups import ToolGroupRegistry
    from serve.config import AgentsConfig
    from serve.storage import Database

    seen: list[dict] = []
    with LoopbackServer(web_search_app(seen)) as srv:
        search = WebSearchConfig(provider="brave", endpoint=f"http://127.0.0.1:{srv.port}/res/v1/web/search")
        config = AgentsConfig(web_search=search)
        runtime = ToolRuntime(ToolGroupRegistry(Database(f"sqlite:///{tmp_path}/db"), search), None, config)
        with pytest.raises(InvalidRequestError, match="needs an API key"):
            asyncio.run(runtime.invoke("web_search", {"query": "bees"}))
        assert seen == []
        own = ProviderData(brave_search_api_key=CLIENT_SEARCH_KEY)
        r = asyncio.run(runtime.invoke("web_search", {"query": "honeybee waggle dance"}, own))
        config.web_search.api_key = SEARCH_KEY
        asyncio.run(runtime.invoke("web_search", {"query": "volcanoes"}))
    content = json.loads(r["content"])
    assert content["query"] == "honeybee waggle dance" and r["error_code"] is None
    assert content["top_k"][0] == {"title": "Honeybee waggle dance", "url": "https://bees.example/waggle",
                                   "content": content["top_k"][0]["content"]}
    assert [s["token"] for s in seen] == [CLIENT_SEARCH_KEY, SEARCH_KEY]


@pytest.mark.parametrize("rule,expected", [
    ("always", {"add": True, "sub": True}),
    ("never", {"add": False, "sub": False}),
    ({"always": {"tool_names": ["add"]}}, {"add": True, "sub": False}),
    ({"never": {"tool_names": ["add"]}}, {"add": False, "sub": True}),
])
def test_require_approval_rules(rule, expected):
    server = {"type": "mcp", "server_label": "s", "server_url": "http://x", "require_approval": rule}
    hosted = HostedTools([server], None, None, 5)
    hosted.mcp = {n: McpTool(server, n, "", {}) for n in ("add", "sub")}
    assert {n: hosted.needs_approval(n) for n in ("add", "sub")} == expected


def test_chat_tools_and_choice():
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}},
             {"type": "web_search_preview"}, {"type": "file_search", "vector_store_ids": ["vs"]}]
    hosted = HostedTools(tools, None, None, 5)
    assert [t["function"]["name"] for t in hosted.chat_tools()] == ["f", "file_search", "web_search"]
    assert hosted.kind_of("f") is None and hosted.kind_of("web_search") == "web_search"
    assert hosted.chat_tool_choice({"type": "web_search_preview"})["function"]["name"] == "web_search"
    assert hosted.chat_tool_choice({"type": "mcp", "server_label": "nope"}) is None
