"""Tables of the Llama Stack 0.2 services: registered tool groups, agents, their sessions and turns."""

from __future__ import annotations

import sqlalchemy as sa

from serve.storage.sql import METADATA, Str, owner_column

tool_groups = sa.Table(
    "tool_groups", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(256), unique=True, nullable=False),
    sa.Column("provider_id", Str(128), nullable=False),
    sa.Column("mcp_endpoint", Str(2048)),
    sa.Column("args", sa.JSON),
    sa.Column("tools", sa.JSON),  # the last tool list read from the MCP server: finds a tool's group by name
)

# builtin tool groups (builtin::rag, builtin::websearch) unregistered until registered again, as Llama Stack lets
unregistered_builtin_groups = sa.Table(
    "unregistered_builtin_tool_groups", METADATA,
    sa.Column("id", Str(256), primary_key=True),
)

llama_agents = sa.Table(
    "llama_agents", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    owner_column(),
    sa.Column("created_at", Str(40), nullable=False),  # ISO 8601, as Llama Stack reports it
    sa.Column("config", sa.JSON, nullable=False),  # the AgentConfig as given
)

agent_sessions = sa.Table(
    "agent_sessions", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    sa.Column("agent_id", Str(64), nullable=False, index=True),
    sa.Column("name", Str(1024), nullable=False),
    sa.Column("started_at", Str(40), nullable=False),
)

agent_turns = sa.Table(
    "agent_turns", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    sa.Column("session_id", Str(64), nullable=False, index=True),
    sa.Column("status", Str(16), nullable=False),  # completed | awaiting_input
    sa.Column("body", sa.JSON, nullable=False),  # the Turn object
    sa.Column("pending_tool_calls", sa.JSON),  # client tool calls a resume must answer
)
