"""Tables of the Responses and Conversations services."""

from __future__ import annotations

import sqlalchemy as sa

from serve.storage.sql import METADATA, Str, owner_column

responses = sa.Table(
    "responses", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    owner_column(),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("status", Str(16), nullable=False),
    sa.Column("model", Str(256), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),  # the full Response object
    sa.Column("input_items", sa.JSON, nullable=False),  # this response's own input, as items
    sa.Column("previous_response_id", Str(64)),
    # a stored run (queued / in_progress) is leased by the replica running it; one whose lease lapsed (its replica
    # died) is failed by another replica instead of staying in progress forever
    sa.Column("runner", Str(128)),
    sa.Column("lease_until", sa.Float, nullable=False, server_default="0"),
)

conversations = sa.Table(
    "conversations", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    owner_column(),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
)

conversation_items = sa.Table(
    "conversation_items", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", Str(64), nullable=False, index=True),
    sa.Column("id", Str(64), nullable=False),  # client-given ids are unique per conversation, not globally
    sa.Column("item", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.UniqueConstraint("conversation_id", "id"),
)

# stored prompts (/v1/prompts): one row per prompt, one per version of it
prompts = sa.Table(
    "prompts", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    owner_column(),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),  # an update must name it: concurrent updates conflict
    sa.Column("default_version", sa.Integer, nullable=False),  # what a get without ?version= answers
)

prompt_versions = sa.Table(
    "prompt_versions", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prompt_id", Str(64), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("prompt", Str(), nullable=False),
    sa.Column("variables", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.UniqueConstraint("prompt_id", "version"),
)
