"""Stored responses and conversations (SQL): any orchestrator replica can continue any of them."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from deployments.agents.items import new_id, normalize_input
from deployments.agents.tables import conversation_items, conversations, responses
from serve.errors import ConflictError, InvalidRequestError, NotFoundError
from serve.pagination import paginate
from serve.storage import Database
from serve.storage.sql import owned, owner, upsert

RUNNING = ("queued", "in_progress")


class ResponseStore:
    def __init__(self, db: Database):
        self.db = db

    def save(self, body: dict[str, Any], input_items: list[dict[str, Any]], previous: str | None,
             lease: tuple[str, float] | None = None) -> None:
        """Insert the response, or update its status and body (a response is saved as it starts and ends).
        `lease` (runner, seconds): the replica running it holds it that long (renewed with `renew`)."""
        values = {"id": body["id"], "owner": owner(), "created_at": body["created_at"], "input_items": input_items,
                  "previous_response_id": previous, "status": body["status"], "body": body, "model": body["model"],
                  "runner": lease[0] if lease else None, "lease_until": time.time() + lease[1] if lease else 0.0}
        with self.db.begin() as c:
            upsert(c, responses, values, key=["id"],
                   update=["status", "body", "model", "runner", "lease_until"])

    def renew(self, response_id: str, runner: str, lease_s: float) -> bool:
        with self.db.begin() as c:
            return c.execute(responses.update().where(
                responses.c.id == response_id, responses.c.runner == runner,
                responses.c.status.in_(RUNNING)).values(lease_until=time.time() + lease_s)).rowcount == 1

    def fail_orphans(self) -> list[str]:
        """Mark failed the stored runs whose replica stopped renewing their lease; their ids."""
        now, failed = time.time(), []
        with self.db.connect() as c:
            rows = list(c.execute(sa.select(responses.c.id, responses.c.body).where(
                responses.c.status.in_(RUNNING), responses.c.lease_until > 0, responses.c.lease_until < now)))
        for rid, body in rows:
            error = {"code": "server_error", "message": "the replica running this response stopped before it "
                                                        "finished; create the response again"}
            with self.db.begin() as c:
                if c.execute(responses.update().where(
                        responses.c.id == rid, responses.c.status.in_(RUNNING), responses.c.lease_until < now
                ).values(status="failed", lease_until=0.0,
                         body={**body, "status": "failed", "error": error})).rowcount == 1:
                    failed.append(rid)
        return failed

    def _row(self, response_id: str) -> Any:
        return self.db.row_or_raise(responses, response_id,
            NotFoundError(f"Response with id '{response_id}' not found.",
                          param="response_id", code="response_not_found"))

    def get(self, response_id: str) -> dict[str, Any]:
        return self._row(response_id).body

    def status(self, response_id: str) -> str | None:
        with self.db.connect() as c:
            row = c.execute(sa.select(responses.c.status).where(responses.c.id == response_id)).first()
        return row[0] if row else None

    def history(self, response_id: str) -> list[dict[str, Any]]:
        """Every item of the chain ending at `response_id`: each response's input, then its output."""
        return self.chain(response_id)[1]

    def chain(self, response_id: str) -> tuple[str, list[dict[str, Any]]]:
        """(the id of the chain's first response, `history(response_id)`): the first id names the whole chain."""
        chain, rid = [], response_id
        while rid:
            row = self._row(rid)
            chain.append(row)
            rid = row.previous_response_id
        items: list[dict[str, Any]] = []
        for row in reversed(chain):
            items += row.input_items + [it for it in row.body.get("output", []) if it.get("type") != "reasoning"]
        return chain[-1].id, items

    def input_items(self, response_id: str, after: str | None, before: str | None, limit: int,
                    order: str) -> dict[str, Any]:
        row = self._row(response_id)
        return paginate(row.input_items, after=after, before=before, limit=limit, order=order)

    def list(self, after: str | None, limit: int, order: str, model: str | None) -> dict[str, Any]:
        q = sa.select(responses.c.body).where(owned(responses)).order_by(responses.c.seq)
        if model:
            q = q.where(responses.c.model == model)
        with self.db.connect() as c:
            rows = [r[0] for r in c.execute(q)]
        return paginate(rows, after=after, limit=limit, order=order)

    def delete(self, response_id: str) -> dict[str, Any]:
        self._row(response_id)
        with self.db.begin() as c:
            c.execute(responses.delete().where(responses.c.id == response_id))
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    def cancel(self, response_id: str) -> dict[str, Any]:
        row = self._row(response_id)
        if row.status not in ("queued", "in_progress"):
            raise InvalidRequestError(f"Cannot cancel a response with status '{row.status}'.", param="response_id")
        body = {**row.body, "status": "cancelled"}
        with self.db.begin() as c:
            c.execute(responses.update().where(responses.c.id == response_id).values(status="cancelled", body=body))
        return body


class ConversationStore:
    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def _object(row: Any) -> dict[str, Any]:
        return {"id": row.id, "object": "conversation", "created_at": row.created_at, "metadata": row.metadata or {}}

    def _row(self, conversation_id: str) -> Any:
        return self.db.row_or_raise(conversations, conversation_id,
            NotFoundError(f"Conversation '{conversation_id}' not found.",
                          param="conversation_id", code="conversation_not_found"))

    def create(self, items: list[dict[str, Any]] | None, metadata: dict | None) -> dict[str, Any]:
        cid = new_id("conv")
        with self._items_conflict(cid, items or []), self.db.begin() as c:  # the conversation with its items
            c.execute(conversations.insert().values(id=cid, owner=owner(), created_at=int(time.time()),
                                                    metadata=metadata or {}))
            self._insert_items(c, cid, normalize_input(items) if items else [])
        return self.get(cid)

    def get(self, conversation_id: str) -> dict[str, Any]:
        return self._object(self._row(conversation_id))

    def update(self, conversation_id: str, metadata: dict) -> dict[str, Any]:
        self._row(conversation_id)
        with self.db.begin() as c:
            c.execute(conversations.update().where(conversations.c.id == conversation_id).values(metadata=metadata))
        return self.get(conversation_id)

    def delete(self, conversation_id: str) -> dict[str, Any]:
        self._row(conversation_id)
        with self.db.begin() as c:
            c.execute(conversation_items.delete().where(conversation_items.c.conversation_id == conversation_id))
            c.execute(conversations.delete().where(conversations.c.id == conversation_id))
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    def append(self, conversation_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._row(conversation_id)
        with self._items_conflict(conversation_id, items), self.db.begin() as c:
            self._insert_items(c, conversation_id, items)
        return items

    @staticmethod
    def _insert_items(conn, conversation_id: str, items: list[dict[str, Any]]) -> None:
        for it in items:
            conn.execute(conversation_items.insert().values(conversation_id=conversation_id, id=it["id"], item=it,
                                                            created_at=int(time.time())))

    @staticmethod
    @contextmanager
    def _items_conflict(conversation_id: str, items: list[dict[str, Any]]):
        """An item id already in the conversation (or twice in `items`) is a 409, and nothing is written."""
        try:
            yield
        except sa.exc.IntegrityError:
            raise ConflictError(f"conversation '{conversation_id}' already has an item with one of the ids "
                                f"{[it.get('id') for it in items]}", param="items") from None

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        self._row(conversation_id)
        with self.db.connect() as c:
            return [r[0] for r in c.execute(sa.select(conversation_items.c.item).where(
                conversation_items.c.conversation_id == conversation_id).order_by(conversation_items.c.seq))]

    def list_items(self, conversation_id: str, after: str | None, limit: int, order: str) -> dict[str, Any]:
        return paginate(self.items(conversation_id), after=after, limit=limit, order=order)

    def get_item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        for it in self.items(conversation_id):
            if it["id"] == item_id:
                return it
        raise NotFoundError(f"Item '{item_id}' not found in conversation '{conversation_id}'.", param="item_id")

    def delete_item(self, conversation_id: str, item_id: str) -> dict[str, Any]:
        self.get_item(conversation_id, item_id)
        with self.db.begin() as c:
            c.execute(conversation_items.delete().where(conversation_items.c.conversation_id == conversation_id,
                                                        conversation_items.c.id == item_id))
        return self.get(conversation_id)
