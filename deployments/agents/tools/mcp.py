"""Remote MCP servers over streamable HTTP, through the `mcp` SDK's client session.

One short session per operation (list or call): the orchestrator is stateless and any replica may run any step.
Errors (unreachable server, protocol errors, tool errors) come back as ToolError with a readable message.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any

DEFAULT_TIMEOUT_S = 30.0


class ToolError(Exception):
    """A tool failed: the message is what the model (and the client) sees."""


@asynccontextmanager
async def _session(url: str, headers: dict[str, str] | None, timeout: float):
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with httpx.AsyncClient(headers=headers or {}, timeout=httpx.Timeout(timeout),
                                 follow_redirects=True) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def _describe(e: BaseException) -> str:
    # anyio task groups wrap the real failure in exception groups
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"


async def list_mcp_tools(url: str, headers: dict[str, str] | None = None,
                         timeout: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
    """The server's tools as [{name, description, input_schema}] (all pages)."""
    try:
        async with _session(url, headers, timeout) as s:
            tools, cursor = [], None
            while True:
                page = await s.list_tools(cursor=cursor) if cursor else await s.list_tools()
                tools += [{"name": t.name, "description": t.description or "",
                           "input_schema": t.inputSchema or {"type": "object", "properties": {}}}
                          for t in page.tools]
                cursor = page.nextCursor
                if not cursor:
                    return tools
    except Exception as e:
        raise ToolError(f"could not list the tools of MCP server {url}: {_describe(e)}") from None


def _content_text(content: list[Any]) -> str:
    parts = []
    for c in content:
        if getattr(c, "type", None) == "text":
            parts.append(c.text)
        elif getattr(c, "type", None) == "resource" and hasattr(c.resource, "text"):
            parts.append(c.resource.text)
        else:
            parts.append(json.dumps(c.model_dump(mode="json", exclude_none=True)))
    return "\n".join(parts)


async def call_mcp_tool(url: str, name: str, arguments: dict[str, Any], headers: dict[str, str] | None = None,
                        timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Calls one tool; returns its text output. A tool-reported error raises ToolError with that text."""
    try:
        async with _session(url, headers, timeout) as s:
            result = await s.call_tool(name, arguments)
    except Exception as e:
        raise ToolError(f"MCP tool {name!r} on {url} failed: {_describe(e)}") from None
    text = _content_text(result.content)
    if result.structuredContent is not None and not text:
        text = json.dumps(result.structuredContent)
    if result.isError:
        raise ToolError(text or f"MCP tool {name!r} reported an error")
    return text
