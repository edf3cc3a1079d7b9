"""Unit tests of the hosted tools' rules: web search set-up errors, MCP approval and allow-lists."""

from __future__ import annotations

import pytest

from deployments.agents.hosted_tools import HostedTools, McpTool
from deployments.agents.tools.web_search import make_web_search
from serve.config import WebSearchConfig
from serve.errors import InvalidRequestError


def test_web_search_needs_config_and_key(monkeypatch):
    with pytest.raises(InvalidRequestError) as e:
        make_web_search(None)
    assert e.value.status_code == 400 and "agents.web_search" in e.value.message
    monkeypatch.delenv("TAVILY_API_KEY", raising=False)
    with pytest.raises(InvalidRequestError) as e:
        make_web_search(WebSearchConfig(provider="tavily"))
    assert "TAVILY_API_KEY" in e.value.message
    monkeypatch.setenv("TAVILY_API_KEY", "k")
    assert make_web_search(WebSearchConfig(provider="tavily")).api_key == "k"


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
