"""The datasets table (registered on the shared metadata): one row per registered dataset."""

from __future__ import annotations

import sqlalchemy as sa

from serve.storage.sql import METADATA, Str, owner_column

datasets = sa.Table(
    "datasets", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(256), unique=True, nullable=False),
    owner_column(),
    sa.Column("purpose", Str(64), nullable=False),
    sa.Column("source", sa.JSON, nullable=False),  # as registered (Llama Stack returns it, inline rows too)
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("storage", Str(64), nullable=False),  # directory of the dataset's Parquet parts
    sa.Column("created_at", sa.Integer, nullable=False),
)
