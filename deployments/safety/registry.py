"""The shields registry: shields declared in the config or registered at run time, persisted in SQL."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from serve.errors import ConflictError, InvalidRequestError, NotFoundError
from serve.storage import Database
from serve.storage.sql import METADATA, Str, upsert

shields = sa.Table(
    "shields", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(256), unique=True, nullable=False),
    sa.Column("provider_id", Str(64), nullable=False),
    sa.Column("provider_resource_id", Str(1024)),
    sa.Column("params", sa.JSON, nullable=False, default=dict),
    sa.Column("from_config", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Integer, nullable=False),
)

PROVIDER_TYPES = {"llama-guard": "inline::llama-guard", "prompt-guard": "inline::prompt-guard",
                  "code-scanner": "inline::code-scanner"}


def shield_object(row: Any) -> dict[str, Any]:
    return {"identifier": row.id, "provider_id": row.provider_id, "provider_resource_id": row.provider_resource_id,
            "type": "shield", "params": row.params or {}}


class ShieldRegistry:
    def __init__(self, db: Database):
        self.db = db

    def upsert_from_config(self, shield_id: str, provider_id: str, resource: str | None, params: dict) -> None:
        with self.db.begin() as c:  # every Safety replica does this at start, possibly at the same moment
            upsert(c, shields, {"id": shield_id, "provider_id": provider_id, "provider_resource_id": resource,
                                "params": params, "from_config": True, "created_at": int(time.time())}, key=["id"])

    def register(self, shield_id: str, provider_id: str, resource: str | None, params: dict) -> dict[str, Any]:
        if provider_id not in PROVIDER_TYPES:
            raise InvalidRequestError(f"unknown shield provider '{provider_id}' ({', '.join(PROVIDER_TYPES)})",
                                      param="provider_id")
        try:
            with self.db.begin() as c:
                c.execute(shields.insert().values(id=shield_id, provider_id=provider_id, provider_resource_id=resource,
                                                  params=params, from_config=False, created_at=int(time.time())))
        except sa.exc.IntegrityError:
            raise ConflictError(f"shield '{shield_id}' already exists", param="shield_id") from None
        return self.get(shield_id)

    def row(self, shield_id: str) -> Any:
        return self.db.row_or_raise(shields, shield_id,
            NotFoundError(f"Shield '{shield_id}' not found", param="shield_id", code="shield_not_found"))

    def get(self, shield_id: str) -> dict[str, Any]:
        return shield_object(self.row(shield_id))

    def list(self) -> list[dict[str, Any]]:
        with self.db.connect() as c:
            return [shield_object(r) for r in c.execute(sa.select(shields).order_by(shields.c.seq))]

    def delete(self, shield_id: str) -> None:
        self.row(shield_id)
        with self.db.begin() as c:
            c.execute(shields.delete().where(shields.c.id == shield_id))
