"""Remote MCP servers over streamable HTTP: a small JSON-RPC client of the protocol itself.

The protocol, not an SDK: the `mcp` SDK's 1.x and 2.x client APIs differ (2.x is what vLLM requires), and the
four requests used here (initialize, notifications/initialized, tools/list, tools/call) are the same in both and
in every server that speaks the initialize handshake. One short session per operation (list or call): the
orchestrator is stateless and any replica may run any step. Errors (unreachable server, protocol errors, tool
errors) come back as ToolError with a readable message.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any

DEFAULT_TIMEOUT_S = 30.0
PROTOCOL_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "stackserve", "version": "0.1.0"}


class ToolError(Exception):
    """A tool failed: the message is what the model (and the client) sees."""


class _ProtocolError(Exception):
    pass


class _Session:
    """One MCP session: JSON-RPC requests POSTed to the endpoint; each answer is JSON or an SSE stream."""

    def __init__(self, http: Any, url: str):
        self.http, self.url = http, url
        self.session_id: str | None = None
        self.version: str | None = None
        self._next_id = 0

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
        if self.version:
            h["MCP-Protocol-Version"] = self.version
        return h

    async def notify(self, method: str) -> None:
        r = await self.http.post(self.url, json={"jsonrpc": "2.0", "method": method}, headers=self._headers())
        if r.status_code >= 400:
            raise _ProtocolError(f"{method}: HTTP {r.status_code}")

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            msg["params"] = params
        async with self.http.stream("POST", self.url, json=msg, headers=self._headers()) as r:
            if r.status_code >= 400:
                body = (await r.aread()).decode("utf-8", "replace")[:300]
                raise _ProtocolError(f"{method}: HTTP {r.status_code} {body}".strip())
            self.session_id = r.headers.get("mcp-session-id") or self.session_id
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                async for payload in _sse_data(r.aiter_lines()):
                    answer = _match(payload, self._next_id)
                    if answer is not None:
                        return _result(method, answer)
                raise _ProtocolError(f"{method}: the event stream ended without an answer")
            return _result(method, _match(await r.aread(), self._next_id) or {})


async def _sse_data(lines):
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


def _match(payload: str | bytes, request_id: int) -> dict[str, Any] | None:
    """The JSON-RPC answer to request_id in a message (or batch); None if it holds none."""
    try:
        msg = json.loads(payload)
    except ValueError:
        raise _ProtocolError(f"not JSON: {payload[:200]!r}") from None
    for m in msg if isinstance(msg, list) else [msg]:
        if isinstance(m, dict) and m.get("id") == request_id and ("result" in m or "error" in m):
            return m
    return None


def _result(method: str, answer: dict[str, Any]) -> dict[str, Any]:
    if "error" in answer:
        err = answer["error"] if isinstance(answer["error"], dict) else {"message": str(answer["error"])}
        raise _ProtocolError(f"{method}: {err.get('message', 'error')} (code {err.get('code')})")
    if not isinstance(answer.get("result"), dict):
        raise _ProtocolError(f"{method}: no result in the answer")
    return answer["result"]


@asynccontextmanager
async def _session(url: str, headers: dict[str, str] | None, timeout: float):
    import httpx

    async with httpx.AsyncClient(headers=headers or {}, timeout=httpx.Timeout(timeout),
                                 follow_redirects=True) as http:
        s = _Session(http, url)
        init = await s.request("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                              "clientInfo": CLIENT_INFO})
        s.version = init.get("protocolVersion") or PROTOCOL_VERSION
        await s.notify("notifications/initialized")
        try:
            yield s
        finally:
            if s.session_id:  # end the server-side session; a server that does not support it answers 405
                try:
                    await http.delete(url, headers=s._headers())
                except httpx.HTTPError:
                    pass


def _describe(e: BaseException) -> str:
    # anyio task groups wrap the real failure in exception groups
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return str(e) if isinstance(e, _ProtocolError) else f"{type(e).__name__}: {e}"


async def list_mcp_tools(url: str, headers: dict[str, str] | None = None,
                         timeout: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
    """The server's tools as [{name, description, input_schema}] (all pages)."""
    try:
        async with _session(url, headers, timeout) as s:
            tools, cursor = [], None
            while True:
                page = await s.request("tools/list", {"cursor": cursor} if cursor else None)
                tools += [{"name": t["name"], "description": t.get("description") or "",
                           "input_schema": t.get("inputSchema") or {"type": "object", "properties": {}}}
                          for t in page.get("tools", [])]
                cursor = page.get("nextCursor")
                if not cursor:
                    return tools
    except Exception as e:
        raise ToolError(f"could not list the tools of MCP server {url}: {_describe(e)}") from None


def _content_text(content: list[Any]) -> str:
    parts = []
    for c in content:
        kind = c.get("type") if isinstance(c, dict) else None
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
        async with _session(url, headers, timeout) as s:
            result = await s.request("tools/call", {"name": name, "arguments": arguments})
    except Exception as e:
        raise ToolError(f"MCP tool {name!r} on {url} failed: {_describe(e)}") from None
    content = result.get("content")
    text = _content_text(content if isinstance(content, list) else [])
    if result.get("structuredContent") is not None and not text:
        text = json.dumps(result["structuredContent"])
    if result.get("isError"):
        raise ToolError(text or f"MCP tool {name!r} reported an error")
    return text
