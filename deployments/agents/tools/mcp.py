"""Remote MCP servers over streamable HTTP, through the official `mcp` SDK (2.x): its streamable-HTTP transport and
ClientSession (initialize, tools/list, tools/call).

One short session per operation (list or call): the orchestrator is stateless and any replica may run any step.
`timeout` bounds the whole operation (connect, handshake, every page or the call). The request's headers
(`Authorization` included) go with every HTTP request; redirects are followed within the server's origin only (the
SDK's rule). Errors (unreachable server, protocol errors, time out, tool errors) come back as ToolError with a
readable message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

DEFAULT_TIMEOUT_S = 30.0
CLIENT_NAME, CLIENT_VERSION = "stackserve", "0.1.0"


class ToolError(Exception):
    """A tool failed: the message is what the model (and the client) sees."""


@asynccontextmanager
async def _session(url: str, headers: dict[str, str] | None, timeout: float) -> AsyncIterator[Any]:
    """An initialized mcp ClientSession with the server, closed (and its server-side session ended) on exit."""
    import anyio
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.types import Implementation

    with anyio.fail_after(timeout):
        async with (
            httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(timeout)) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write, read_timeout_seconds=timeout,
                          client_info=Implementation(name=CLIENT_NAME, version=CLIENT_VERSION)) as session,
        ):
            await session.initialize()
            yield session


def _describe(e: BaseException) -> str:
    from mcp.shared.exceptions import MCPError

    # anyio task groups (the SDK's transport and session) wrap the real failure in exception groups
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    if isinstance(e, MCPError):
        return f"{e.message} (code {e.code})"
    if isinstance(e, TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}"


async def list_mcp_tools(url: str, headers: dict[str, str] | None = None,
                         timeout: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
    """The server's tools as [{name, description, input_schema}] (all pages)."""
    from mcp.types import PaginatedRequestParams

    try:
        async with _session(url, headers, timeout) as session:
            tools, cursor = [], None
            while True:
                page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
                tools += [{"name": t.name, "description": t.description or "",
                           "input_schema": t.input_schema or {"type": "object", "properties": {}}}
                          for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    return tools
    except Exception as e:
        raise ToolError(f"could not list the tools of MCP server {url}: {_describe(e)}") from None


def _content_text(content: list[dict[str, Any]]) -> str:
    parts = []
    for c in content:
        kind = c.get("type")
        if kind == "text":
            parts.append(str(c.get("text", "")))
        elif kind == "resource" and isinstance(c.get("resource"), dict) and "text" in c["resource"]:
            parts.append(str(c["resource"]["text"]))
        else:
            parts.append(json.dumps(c))
    return "\n".join(parts)


async def call_mcp_tool(url: str, name: str, arguments: dict[str, Any], headers: dict[str, str] | None = None,
                        timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Calls one tool; returns its text output. A tool-reported error raises ToolError with that text."""
    try:
        async with _session(url, headers, timeout) as session:
            result = await session.call_tool(name, arguments)
    except Exception as e:
        raise ToolError(f"MCP tool {name!r} on {url} failed: {_describe(e)}") from None
    # content blocks as they go over the wire (type, text, resource, ...)
    text = _content_text([c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content])
    if result.structured_content is not None and not text:
        text = json.dumps(result.structured_content)
    if result.is_error:
        raise ToolError(text or f"MCP tool {name!r} reported an error")
    return text
