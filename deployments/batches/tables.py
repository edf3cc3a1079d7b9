"""Tables of the Batch API (registered on the shared metadata): batches and their per-line results."""

from __future__ import annotations

import sqlalchemy as sa

from serve.storage.sql import METADATA, Str, owner_column

batches = sa.Table(
    "batches", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", Str(64), unique=True, nullable=False),
    owner_column(),
    sa.Column("status", Str(16), nullable=False),
    sa.Column("endpoint", Str(64), nullable=False),
    sa.Column("input_file_id", Str(64), nullable=False),
    sa.Column("completion_window", Str(16), nullable=False),
    sa.Column("metadata", sa.JSON),
    sa.Column("model", Str(256)),
    sa.Column("total", sa.Integer, nullable=False, default=0),
    sa.Column("errors", sa.JSON),  # unusable input lines: [{code, message, param, line}]
    sa.Column("output_file_id", Str(64)),
    sa.Column("error_file_id", Str(64)),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Integer, nullable=False),
    sa.Column("in_progress_at", sa.Integer),
    sa.Column("finalizing_at", sa.Integer),
    sa.Column("completed_at", sa.Integer),
    sa.Column("failed_at", sa.Integer),
    sa.Column("expired_at", sa.Integer),
    sa.Column("cancelling_at", sa.Integer),
    sa.Column("cancelled_at", sa.Integer),
    # the replica running the job renews its lease; a job whose lease ran out is resumed by another replica
    sa.Column("runner", Str(128)),
    sa.Column("lease_until", sa.Float, nullable=False, default=0.0),
)

batch_results = sa.Table(
    "batch_results", METADATA,
    sa.Column("batch_id", Str(64), primary_key=True),
    sa.Column("line", sa.Integer, primary_key=True),  # one result per input line: a resumed job never duplicates
    sa.Column("custom_id", Str(512)),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("record", Str(), nullable=False),  # the output/error file line, JSON
    sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
)
