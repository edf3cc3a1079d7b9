"""The tool group registry (Llama Stack 0.2 `/toolgroups`): builtin groups plus MCP servers registered in SQL.

The builtins are `builtin::rag` (knowledge_search over vector DBs, provider `rag-runtime`) and, when
`agents.web_search` is configured, `builtin::websearch` (provider `tavily-search` or `brave-search`). As in Llama
Stack, a builtin can be unregistered (it stays gone, recorded in SQL, for every replica and across restarts) and
registered again with its provider id. Other groups use provider `model-context-protocol` and name their server's URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import sqlalchemy as sa

from deployments.agents.llama_tables import tool_groups, unregistered_builtin_groups
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

    def configured_builtins(self) -> dict[str, dict[str, Any]]:
        """The builtin groups this server's config provides, registered or not, by id."""
        groups = [toolgroup_object(RAG_GROUP, "rag-runtime")]
        if self.web_search is not None:
            groups.append(toolgroup_object(WEB_SEARCH_GROUP, f"{self.web_search.provider}-search"))
        return {g["identifier"]: g for g in groups}

    def builtins(self) -> list[dict[str, Any]]:
        """The builtin groups registered now (not unregistered)."""
        with self.db.connect() as c:
            gone = set(c.execute(sa.select(unregistered_builtin_groups.c.id)).scalars())
        return [g for gid, g in self.configured_builtins().items() if gid not in gone]

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
        builtin = self.configured_builtins().get(toolgroup_id)
        if builtin is not None:
            return self._register_builtin(builtin, provider_id, mcp_uri, args)
        if toolgroup_id == WEB_SEARCH_GROUP:
            raise InvalidRequestError(f"'{WEB_SEARCH_GROUP}' needs web search in the server's config "
                                      "(agents.web_search)", param="toolgroup_id", code="web_search_not_configured")
        if provider_id != MCP_PROVIDER:
            raise InvalidRequestError(f"provider_id {provider_id!r} cannot register tool groups here; use "
                                      f"'{MCP_PROVIDER}' with an mcp_endpoint", param="provider_id")
        if not mcp_uri:
            raise InvalidRequestError("an MCP tool group needs mcp_endpoint.uri", param="mcp_endpoint")
        check_mcp_uri(mcp_uri)
        if "/" in toolgroup_id:
            raise InvalidRequestError(f"'{toolgroup_id}' cannot be registered: a group id has no '/'",
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

    def _register_builtin(self, builtin: dict[str, Any], provider_id: str, mcp_uri: str | None,
                          args: dict | None) -> None:
        """Registers an unregistered builtin again (a no-op when it is registered)."""
        gid = builtin["identifier"]
        if provider_id != builtin["provider_id"] or mcp_uri or args:
            raise InvalidRequestError(f"'{gid}' is a builtin tool group: register it with provider_id "
                                      f"'{builtin['provider_id']}' and no mcp_endpoint or args", param="provider_id")
        with self.db.begin() as c:
            c.execute(unregistered_builtin_groups.delete().where(unregistered_builtin_groups.c.id == gid))

    def unregister(self, toolgroup_id: str) -> None:
        self.get(toolgroup_id)  # 404 unless registered now
        if toolgroup_id in self.configured_builtins():
            try:
                with self.db.begin() as c:
                    c.execute(unregistered_builtin_groups.insert().values(id=toolgroup_id))
            except sa.exc.IntegrityError:
                pass  # a concurrent unregistration got there first
            return
        with self.db.begin() as c:
            c.execute(tool_groups.delete().where(tool_groups.c.id == toolgroup_id))

    def cached_tools(self) -> dict[str, list[dict[str, Any]]]:
        """{group id: the tool definitions last read from its MCP server}."""
        return {r.id: r.tools for r in self._rows() if r.tools}

    def remember_tools(self, toolgroup_id: str, tools: list[dict[str, Any]]) -> None:
        with self.db.begin() as c:
            c.execute(tool_groups.update().where(tool_groups.c.id == toolgroup_id).values(tools=tools))
