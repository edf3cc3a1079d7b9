"""The span store's tables. A schema of their own (`TELEMETRY_METADATA`), so spans can live in a separate database
(by default `telemetry.db` in the data directory) and their frequent writes never contend with the stack's state."""

from __future__ import annotations

import sqlalchemy as sa

TELEMETRY_METADATA = sa.MetaData()

# Times are integer nanoseconds since the epoch (OpenTelemetry's own unit); the API renders them as ISO 8601.
spans = sa.Table(
    "telemetry_spans", TELEMETRY_METADATA,
    sa.Column("span_id", sa.String(64), primary_key=True),
    sa.Column("trace_id", sa.String(64), nullable=False, index=True),
    sa.Column("parent_span_id", sa.String(64), index=True),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, default="internal"),
    sa.Column("start_ns", sa.BigInteger, nullable=False, index=True),
    sa.Column("end_ns", sa.BigInteger),
    sa.Column("status", sa.String(8)),  # ok | error | None (unset)
    sa.Column("attributes", sa.JSON, nullable=False, default=dict),
    sa.Column("events", sa.JSON, nullable=False, default=list),
)

traces = sa.Table(
    "telemetry_traces", TELEMETRY_METADATA,
    sa.Column("trace_id", sa.String(64), primary_key=True),
    sa.Column("root_span_id", sa.String(64), nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False, index=True),
    sa.Column("end_ns", sa.BigInteger),
)

# Llama Stack log events that are not spans: unstructured logs and metric points, kept for their TTL.
events = sa.Table(
    "telemetry_events", TELEMETRY_METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trace_id", sa.String(64), nullable=False, index=True),
    sa.Column("span_id", sa.String(64), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("time_ns", sa.BigInteger, nullable=False),
    sa.Column("expires_ns", sa.BigInteger, nullable=False, index=True),
    sa.Column("body", sa.JSON, nullable=False),
)
