"""Stored Llama Stack 0.2 agents, sessions and turns (SQL): any Agents replica runs any session's next turn."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from deployments.agents.llama_tables import agent_sessions, agent_turns, llama_agents
from serve.errors import NotFoundError
from serve.pagination import paginate_records
from serve.storage import Database
from serve.storage.sql import owned, owner


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class AgentStore:
    def __init__(self, db: Database):
        self.db = db

    # ---- agents -----------------------------------------------------------------------------------------------

    def create_agent(self, config: dict[str, Any]) -> dict[str, Any]:
        agent_id = str(uuid.uuid4())
        with self.db.begin() as c:
            c.execute(llama_agents.insert().values(id=agent_id, owner=owner(), created_at=now_iso(), config=config))
        return {"agent_id": agent_id}

    @staticmethod
    def _agent_object(row: Any) -> dict[str, Any]:
        return {"agent_id": row.id, "agent_config": row.config, "created_at": row.created_at}

    def _one(self, query: Any, what: str, param: str) -> Any:
        with self.db.connect() as c:
            row = c.execute(query).first()
        if row is None:
            raise NotFoundError(f"{what} not found", param=param, code=f"{param.removesuffix('_id')}_not_found")
        return row

    def get_agent(self, agent_id: str) -> dict[str, Any]:
        query = sa.select(llama_agents).where(llama_agents.c.id == agent_id, owned(llama_agents))
        row = self._one(query, f"Agent '{agent_id}'", "agent_id")
        return self._agent_object(row)

    def list_agents(self, start_index: int | None, limit: int | None) -> dict[str, Any]:
        with self.db.connect() as c:
            rows = c.execute(sa.select(llama_agents).where(owned(llama_agents)).order_by(llama_agents.c.seq))
            return paginate_records([self._agent_object(r) for r in rows], start_index, limit)

    def delete_agent(self, agent_id: str) -> None:
        self.get_agent(agent_id)
        with self.db.begin() as c:
            sessions = sa.select(agent_sessions.c.id).where(agent_sessions.c.agent_id == agent_id)
            c.execute(agent_turns.delete().where(agent_turns.c.session_id.in_(sessions)))
            c.execute(agent_sessions.delete().where(agent_sessions.c.agent_id == agent_id))
            c.execute(llama_agents.delete().where(llama_agents.c.id == agent_id))

    # ---- sessions ---------------------------------------------------------------------------------------------

    def create_session(self, agent_id: str, name: str) -> dict[str, Any]:
        self.get_agent(agent_id)
        session_id = str(uuid.uuid4())
        with self.db.begin() as c:
            c.execute(agent_sessions.insert().values(id=session_id, agent_id=agent_id, name=name,
                                                     started_at=now_iso()))
        return {"session_id": session_id}

    def _session_row(self, agent_id: str, session_id: str) -> Any:
        self.get_agent(agent_id)
        t = agent_sessions.c
        query = sa.select(agent_sessions).where(t.id == session_id, t.agent_id == agent_id)
        return self._one(query, f"Session '{session_id}' of agent '{agent_id}'", "session_id")

    def turns(self, session_id: str) -> list[dict[str, Any]]:
        with self.db.connect() as c:
            return [r[0] for r in c.execute(sa.select(agent_turns.c.body).where(
                agent_turns.c.session_id == session_id).order_by(agent_turns.c.seq))]

    def get_session(self, agent_id: str, session_id: str, turn_ids: list[str] | None = None) -> dict[str, Any]:
        row = self._session_row(agent_id, session_id)
        turns = self.turns(session_id)
        if turn_ids:
            turns = [t for t in turns if t["turn_id"] in turn_ids]
        return {"session_id": row.id, "session_name": row.name, "turns": turns, "started_at": row.started_at}

    def list_sessions(self, agent_id: str, start_index: int | None, limit: int | None) -> dict[str, Any]:
        self.get_agent(agent_id)
        with self.db.connect() as c:
            ids = [r[0] for r in c.execute(sa.select(agent_sessions.c.id).where(
                agent_sessions.c.agent_id == agent_id).order_by(agent_sessions.c.seq))]
        return paginate_records([self.get_session(agent_id, s) for s in ids], start_index, limit)

    def delete_session(self, agent_id: str, session_id: str) -> None:
        self._session_row(agent_id, session_id)
        with self.db.begin() as c:
            c.execute(agent_turns.delete().where(agent_turns.c.session_id == session_id))
            c.execute(agent_sessions.delete().where(agent_sessions.c.id == session_id))

    # ---- turns ------------------------------------------------------------------------------------------------

    def _turn_row(self, agent_id: str, session_id: str, turn_id: str) -> Any:
        self._session_row(agent_id, session_id)
        query = sa.select(agent_turns).where(agent_turns.c.id == turn_id, agent_turns.c.session_id == session_id)
        return self._one(query, f"Turn '{turn_id}' in session '{session_id}'", "turn_id")

    def get_turn(self, agent_id: str, session_id: str, turn_id: str) -> dict[str, Any]:
        return self._turn_row(agent_id, session_id, turn_id).body

    def pending_turn(self, agent_id: str, session_id: str, turn_id: str) -> tuple[dict[str, Any], list[dict]]:
        """A turn and the client tool calls it waits for (none when it is not awaiting input)."""
        row = self._turn_row(agent_id, session_id, turn_id)
        return row.body, (row.pending_tool_calls or []) if row.status == "awaiting_input" else []

    def get_step(self, agent_id: str, session_id: str, turn_id: str, step_id: str) -> dict[str, Any]:
        for step in self.get_turn(agent_id, session_id, turn_id)["steps"]:
            if step["step_id"] == step_id:
                return {"step": step}
        raise NotFoundError(f"Step '{step_id}' not found in turn '{turn_id}'", param="step_id", code="step_not_found")

    def save_turn(self, turn: dict[str, Any], pending_tool_calls: list[dict] | None) -> None:
        status = "awaiting_input" if pending_tool_calls else "completed"
        values = {"status": status, "body": turn, "pending_tool_calls": pending_tool_calls or None}
        with self.db.begin() as c:
            exists = c.execute(sa.select(agent_turns.c.id).where(agent_turns.c.id == turn["turn_id"])).first()
            if exists:
                c.execute(agent_turns.update().where(agent_turns.c.id == turn["turn_id"]).values(values))
            else:
                c.execute(agent_turns.insert().values(id=turn["turn_id"], session_id=turn["session_id"], **values))

    def session_turns(self, agent_id: str, session_id: str) -> list[dict[str, Any]]:
        """The session's turns, oldest first (checks that the session belongs to the agent)."""
        self._session_row(agent_id, session_id)
        return self.turns(session_id)
