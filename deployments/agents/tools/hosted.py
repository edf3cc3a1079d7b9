"""Hosted tool adapters: one class per server-side tool kind behind one small interface.

An adapter says which model-facing function names it owns (`matches`), what the model sees of it
(`chat_functions`), what its output item looks like (`start`), which events announce its progress (`events`,
`progress`) and runs one call (`call`), filling in the item and returning what the model reads next. The search
adapters live here; the MCP adapter, which also discovers its tools, lives in mcp_tool.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from deployments.agents.items import new_id, search_results_text
from deployments.agents.tools.web_search import results_text
from serve.protocol.vector_io import SearchRequest
from serve.telemetry.agents import tool_span

FILE_SEARCH = "file_search"
WEB_SEARCH = "web_search"
WEB_SEARCH_TYPES = ("web_search", "web_search_preview")
QUERY = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}


def chat_function(name: str, description: str, parameters: dict) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def query_of(arguments: str) -> str:
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return ""
    return str(args.get("query") or "").strip() if isinstance(args, dict) else ""


@dataclass
class ToolDeps:
    """What the adapters call: the VectorIO handle, the web search provider, the MCP timeout."""

    vector_io: Any = None
    web_search: Any = None  # a WebSearchProvider, when the request asks for web_search
    timeout_s: float = 60.0


@dataclass
class CallContext:
    """What a call may need from its response: the user's own words and the request's `include`."""

    user_text: str = ""
    include: list[str] = field(default_factory=list)


@dataclass
class ToolResult:
    content: str  # the tool message the model reads next
    citations: list[dict[str, Any]] = field(default_factory=list)  # annotations for the final answer


class HostedTool:
    """The common interface; `specs` are the request's tool entries this adapter serves."""

    kind = ""
    tool_types: tuple[str, ...] = ()  # the request tool types it serves
    events = ""  # event prefix: response.<output item type>
    failed_event = False  # a failed call ends with `<events>.failed` (else `.completed` with an error)

    def __init__(self, specs: list[dict[str, Any]], deps: ToolDeps):
        self.specs = specs
        self.deps = deps

    def matches(self, fn: str) -> bool:
        return bool(self.specs) and fn == self.kind

    def chat_functions(self) -> list[dict[str, Any]]:
        return []

    def forced_function(self, choice: dict[str, Any]) -> str | None:
        """The function a tool_choice object naming this kind forces (None: not this kind)."""
        return self.kind if choice.get("type") in self.tool_types else None

    def start(self, fn: str, args: str) -> dict[str, Any]:
        raise NotImplementedError

    def progress(self, args: str) -> list[tuple[str, dict[str, Any]]]:
        """(event type, fields) sent between `in_progress` and the call's result."""
        return [(f"{self.events}.searching", {})]

    async def call(self, fn: str, item: dict[str, Any], args: str, ctx: CallContext) -> ToolResult:
        raise NotImplementedError

    def fail(self, item: dict[str, Any], message: str) -> None:
        item["status"], item["error"] = "failed", message


async def search_store(vector_io: Any, store_id: str, req: SearchRequest) -> dict[str, Any]:
    """One vector store's search page from the VectorIO deployment."""
    return await vector_io.search_vector_store.remote(store_id, req)


class FileSearchTool(HostedTool):
    kind, tool_types, events = FILE_SEARCH, (FILE_SEARCH,), "response.file_search_call"

    def chat_functions(self) -> list[dict[str, Any]]:
        return [chat_function(FILE_SEARCH, "Search the knowledge base (uploaded files) for passages about a query.",
                              QUERY)] if self.specs else []

    def start(self, fn: str, args: str) -> dict[str, Any]:
        return {"type": "file_search_call", "id": new_id("fs"), "status": "in_progress", "queries": [],
                "results": None}

    async def call(self, fn: str, item: dict[str, Any], args: str, ctx: CallContext) -> ToolResult:
        # the model's query, and the user's own words: small models write poor queries
        item["queries"] = [q for q in dict.fromkeys([query_of(args), ctx.user_text]) if q]
        results = await self.search(item["queries"])
        if "file_search_call.results" in ctx.include:
            item["results"] = results
        citations = [{"type": "file_citation", "file_id": r["file_id"], "filename": r["filename"]} for r in results]
        return ToolResult(search_results_text(results), citations)

    @tool_span("file_search")
    async def search(self, queries: list[str]) -> list[dict[str, Any]]:
        """The best passages over every vector store of every file_search tool."""
        results = []
        for t in self.specs:
            req = SearchRequest(query=queries, max_num_results=t.get("max_num_results", 10), filters=t.get("filters"),
                                ranking_options=t.get("ranking_options"))
            for vs in t["vector_store_ids"]:
                page = await search_store(self.deps.vector_io, vs, req)
                results += [{"file_id": d["file_id"], "filename": d["filename"], "score": d["score"],
                             "attributes": d["attributes"], "text": d["content"][0]["text"]} for d in page["data"]]
        limit = min([t.get("max_num_results", 10) for t in self.specs] or [10])
        return sorted(results, key=lambda r: -r["score"])[:limit]


class WebSearchTool(HostedTool):
    kind, tool_types, events = WEB_SEARCH, WEB_SEARCH_TYPES, "response.web_search_call"

    def chat_functions(self) -> list[dict[str, Any]]:
        return [chat_function(WEB_SEARCH, "Search the web for up-to-date information about a query.",
                              QUERY)] if self.specs else []

    def start(self, fn: str, args: str) -> dict[str, Any]:
        return {"type": "web_search_call", "id": new_id("ws"), "status": "in_progress",
                "action": {"type": "search", "query": query_of(args)}}

    async def call(self, fn: str, item: dict[str, Any], args: str, ctx: CallContext) -> ToolResult:
        results = await self.search(item["action"]["query"] or ctx.user_text)
        item["action"]["sources"] = [{"type": "url", "url": r["url"]} for r in results]
        citations = [{"type": "url_citation", "url": r["url"], "title": r["title"]} for r in results]
        return ToolResult(results_text(results), citations)

    @tool_span("web_search")
    async def search(self, query: str) -> list[dict[str, Any]]:
        provider = self.deps.web_search
        limit = min([int(t.get("max_num_results") or 0) or provider.max_results for t in self.specs])
        return await provider.search(query, limit)
