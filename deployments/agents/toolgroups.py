"""The tool group registry (Llama Stack 0.2 `/toolgroups`): builtin groups plus MCP servers registered in SQL.

`builtin::rag` (knowledge_search over vector DBs) is always there; `builtin::websearch` when `agents.web_search`
is configured. Registered groups use provider `model-context-protocol` and name their server's URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import sqlalchemy as sa

from deployments.agents.llama_tables import tool_groups
from serve.errors import ConflictError, InvalidRequestError, NotFoundError
from serve.storage import Database

RAG_GROUP = "builtin::rag"
WEB_SEARCH_GROUP = "builtin::websearch"
MCP_PROVIDER = "model-context-protocol"


def toolgroup_object(identifier: str, provider_id: str, mcp_uri: str | None = None,
                     args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"identifier": identifier, "provider_resource_id": identifier, "provider_id": provider_id,
            "type": "tool_group", "mcp_endpoint": {"uri": mcp_uri} if mcp_uri else None, "args": args}


def split_toolgroup_name(name: str) -> tuple[str, str | None]:
    """'builtin::rag/knowledge_search' -> ('builtin::rag', 'knowledge_search'); a plain group id -> (id, None)."""
    group, _, tool = name.partition("/")
    return group, tool or None


def check_mcp_uri(uri: str) -> None:
    url = urlparse(uri)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise InvalidRequestError(f"mcp_endpoint.uri must be an http(s) URL, got {uri!r}", param="mcp_endpoint.uri")


class ToolGroupRegistry:
    def __init__(self, db: Database, web_search: Any = None):
        self.db = db
        self.web_search = web_search  # serve.config.WebSearchConfig or None

    def builtins(self) -> list[dict[str, Any]]:
        groups = [toolgroup_object(RAG_GROUP, "rag-runtime")]
        if self.web_search is not None:
            groups.append(toolgroup_object(WEB_SEARCH_GROUP, f"{self.web_search.provider}-search"))
        return groups

    def _rows(self) -> list[Any]:
        with self.db.connect() as c:
            return list(c.execute(sa.select(tool_groups).order_by(tool_groups.c.seq)))

    @staticmethod
    def _object(row: Any) -> dict[str, Any]:
        return toolgroup_object(row.id, row.provider_id, row.mcp_endpoint, row.args)

    def list(self) -> list[dict[str, Any]]:
        return self.builtins() + [self._object(r) for r in self._rows()]

    def get(self, toolgroup_id: str) -> dict[str, Any]:
        group_id, _ = split_toolgroup_name(toolgroup_id)
        for g in self.list():
            if g["identifier"] == group_id:
                return g
        raise NotFoundError(f"Tool group '{group_id}' not found", param="toolgroup_id", code="toolgroup_not_found")

    def register(self, toolgroup_id: str, provider_id: str, mcp_uri: str | None, args: dict | None) -> None:
        if provider_id != MCP_PROVIDER:
            raise InvalidRequestError(f"provider_id {provider_id!r} cannot register tool groups here; use "
                                      f"'{MCP_PROVIDER}' with an mcp_endpoint", param="provider_id")
        if not mcp_uri:
            raise InvalidRequestError("an MCP tool group needs mcp_endpoint.uri", param="mcp_endpoint")
        check_mcp_uri(mcp_uri)
        if "/" in toolgroup_id or toolgroup_id in {g["identifier"] for g in self.builtins()}:
            raise InvalidRequestError(f"'{toolgroup_id}' cannot be registered (builtin or contains '/')",
                                      param="toolgroup_id")
        for attempt in range(2):  # a registration racing ours inserts first: then compare with it
            try:
                with self.db.begin() as c:
                    row = c.execute(sa.select(tool_groups).where(tool_groups.c.id == toolgroup_id)).first()
                    if row is not None:
                        if (row.provider_id, row.mcp_endpoint, row.args) == (provider_id, mcp_uri, args):
                            return  # the same registration again
                        raise ConflictError(f"Tool group '{toolgroup_id}' is already registered differently",
                                            param="toolgroup_id", code="toolgroup_exists")
                    c.execute(tool_groups.insert().values(id=toolgroup_id, provider_id=provider_id,
                                                          mcp_endpoint=mcp_uri, args=args))
                return
            except sa.exc.IntegrityError:
                if attempt:
                    raise

    def unregister(self, toolgroup_id: str) -> None:
        if toolgroup_id in {g["identifier"] for g in self.builtins()}:
            raise InvalidRequestError(f"builtin tool group '{toolgroup_id}' cannot be unregistered",
                                      param="toolgroup_id")
        self.get(toolgroup_id)
        with self.db.begin() as c:
            c.execute(tool_groups.delete().where(tool_groups.c.id == toolgroup_id))

    def cached_tools(self) -> dict[str, list[dict[str, Any]]]:
        """{group id: the tool definitions last read from its MCP server}."""
        return {r.id: r.tools for r in self._rows() if r.tools}

    def remember_tools(self, toolgroup_id: str, tools: list[dict[str, Any]]) -> None:
        with self.db.begin() as c:
            c.execute(tool_groups.update().where(tool_groups.c.id == toolgroup_id).values(tools=tools))
