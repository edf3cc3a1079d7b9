"""A tiny MCP server (FastMCP, streamable HTTP, stateless JSON) on a loopback port, for tool tests.

Tools: `add(a, b)`, `lookup_capital(country)` over a small fixed table, and `explode(reason)`, which always
fails. conftest.py imports the `mcp_server_url` fixture (its endpoint URL).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

CAPITALS = {"france": "Paris", "japan": "Tokyo", "kenya": "Nairobi", "peru": "Lima"}


def build_server():
    from mcp.server.fastmcp import FastMCP

    mcp = FastMCP("stackserve-test-tools", stateless_http=True, json_response=True)

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool()
    def lookup_capital(country: str) -> str:
        """The capital city of a country."""
        return CAPITALS.get(country.strip().lower(), f"unknown country: {country}")

    @mcp.tool()
    def explode(reason: str) -> str:
        """Always fails (for error handling tests)."""
        raise RuntimeError(f"exploded: {reason}")

    return mcp


@pytest.fixture(scope="session")
def mcp_server_url():
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(build_server().streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test MCP server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(timeout=10)
