"""The MCP client (deployments/agents/tools/mcp.py, on the `mcp` SDK) against servers built on the same SDK, over
loopback HTTP: listing and calling, headers passed through, timeouts and failures as ToolError."""

import asyncio
import time

import pytest

from deployments.agents.tools.mcp import ToolError, call_mcp_tool, list_mcp_tools
from tests.tool_servers import LoopbackServer, mcp_app


def _recording(app, seen: list[dict[str, str]]):
    """The ASGI app, noting each HTTP request's headers."""
    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            seen.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)
    return wrapped


def _slow_app():
    import anyio
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("slow", log_level="WARNING")

    @mcp.tool()
    async def nap(seconds: float) -> str:
        """Sleeps."""
        await anyio.sleep(seconds)
        return "awake"

    return mcp.streamable_http_app(stateless_http=True, json_response=True)


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
def test_list_call_and_headers(json_response):
    seen: list[dict[str, str]] = []
    with LoopbackServer(_recording(mcp_app(json_response), seen)) as srv:
        url = f"http://127.0.0.1:{srv.port}/mcp"
        headers = {"Authorization": "Bearer sekrit", "X-Tenant": "t1"}
        tools = asyncio.run(list_mcp_tools(url, headers))
        assert [t["name"] for t in tools] == ["add", "lookup_capital", "explode"]
        assert tools[0]["input_schema"]["properties"].keys() == {"a", "b"} and tools[0]["description"]
        assert asyncio.run(call_mcp_tool(url, "add", {"a": 2, "b": 40}, headers)) == "42"
        with pytest.raises(ToolError, match="exploded: why not"):
            asyncio.run(call_mcp_tool(url, "explode", {"reason": "why not"}))
        with pytest.raises(ToolError, match="no_such_tool"):
            asyncio.run(call_mcp_tool(url, "no_such_tool", {}))
    with_headers = [h for h in seen if h.get("x-tenant")]
    assert with_headers and all(h["authorization"] == "Bearer sekrit" for h in with_headers)
    assert {h.get("x-tenant") for h in seen} == {"t1", None}  # the header-less calls sent none


def test_unreachable_and_timeout():
    with pytest.raises(ToolError, match="could not list the tools of MCP server http://127.0.0.1:1/mcp"):
        asyncio.run(list_mcp_tools("http://127.0.0.1:1/mcp", timeout=5))  # nothing listens on port 1
    with LoopbackServer(_slow_app()) as srv:
        url = f"http://127.0.0.1:{srv.port}/mcp"
        assert asyncio.run(call_mcp_tool(url, "nap", {"seconds": 0}, timeout=10)) == "awake"
        start = time.monotonic()
        with pytest.raises(ToolError, match="timed out"):
            asyncio.run(call_mcp_tool(url, "nap", {"seconds": 30}, timeout=1))
        assert time.monotonic() - start < 10
