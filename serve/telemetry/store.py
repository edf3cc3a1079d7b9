"""The built-in span store: finished spans in SQL, read back by the Llama Stack 0.2 telemetry API.

Every replica process writes its own spans (from its batch span processor's thread); the ingress reads. A trace row
is written for each root span (the ingress's server span, or a client's `span_start` without a parent), so a trace
is listed once its request is done. Retention is bounded twice: by age and by a maximum number of spans.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from serve.errors import ConflictError, InvalidRequestError, NotFoundError
from serve.storage.sql import Database
from serve.telemetry.tables import TELEMETRY_METADATA, events, spans, traces

ROOT_ATTRIBUTE = "__root__"  # Llama Stack's mark of a trace's root span
PRUNE_EVERY_S = 30.0
_ORDER_FIELDS = {"trace_id": traces.c.trace_id, "root_span_id": traces.c.root_span_id,
                 "start_time": traces.c.start_ns, "end_time": traces.c.end_ns}


def iso(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat()


def to_ns(value: datetime | str) -> int:
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _condition(key: str, op: str, value: Any) -> sa.ColumnElement:
    """One Llama Stack QueryCondition on a span's attributes; the value's type picks the comparison."""
    attr = spans.c.attributes[key]
    if isinstance(value, bool):
        target, value = attr.as_boolean(), value
    elif isinstance(value, int | float):
        target = attr.as_float()
    elif isinstance(value, str):
        target = attr.as_string()
    elif value is None and op in ("eq", "ne"):
        return attr.as_string().is_(None) if op == "eq" else attr.as_string().is_not(None)
    else:
        raise InvalidRequestError(f"attribute filter on '{key}': value must be a string, number or boolean",
                                  param="attribute_filters")
    ops = {"eq": target.__eq__, "ne": target.__ne__, "gt": target.__gt__, "lt": target.__lt__}
    if op not in ops:
        raise InvalidRequestError(f"attribute filter op must be eq, ne, gt or lt, got '{op}'",
                                  param="attribute_filters")
    return ops[op](value)


class SpanStore:
    def __init__(self, url: str, retention_hours: float = 168.0, max_spans: int = 200_000):
        self.db = Database(url, TELEMETRY_METADATA)
        self.retention_ns = int(retention_hours * 3600 * 1e9)
        self.max_spans = max_spans
        self._last_prune = 0.0

    # ---- writing ------------------------------------------------------------------------------------------

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Insert finished spans (dicts with the `spans` columns); roots also record their trace."""
        if not rows:
            return
        with self.db.begin() as conn:
            conn.execute(spans.insert(), rows)
            for r in rows:
                if r["attributes"].get(ROOT_ATTRIBUTE):
                    self._upsert_trace(conn, r["trace_id"], r["span_id"], r["start_ns"], r["end_ns"])
        if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
            self.prune()

    @staticmethod
    def _upsert_trace(conn, trace_id: str, span_id: str, start_ns: int, end_ns: int | None) -> None:
        """A client may send many requests in one trace: the trace spans the earliest root to the latest end."""
        row = conn.execute(sa.select(traces).where(traces.c.trace_id == trace_id)).first()
        if row is None:
            conn.execute(traces.insert().values(trace_id=trace_id, root_span_id=span_id, start_ns=start_ns,
                                                end_ns=end_ns))
            return
        values: dict[str, Any] = {}
        if start_ns < row.start_ns:
            values |= {"start_ns": start_ns, "root_span_id": span_id}
        if end_ns is not None and (row.end_ns is None or end_ns > row.end_ns):
            values["end_ns"] = end_ns
        if values:
            conn.execute(traces.update().where(traces.c.trace_id == trace_id).values(**values))

    def prune(self, now_ns: int | None = None) -> None:
        """Drop what is older than the retention, then the oldest spans beyond `max_spans`."""
        self._last_prune = time.monotonic()
        now_ns = now_ns or time.time_ns()
        cutoff = now_ns - self.retention_ns
        with self.db.begin() as conn:
            excess = conn.execute(sa.select(sa.func.count()).select_from(spans)).scalar_one() - self.max_spans
            if excess > 0:
                nth = conn.execute(sa.select(spans.c.start_ns).order_by(spans.c.start_ns)
                                   .offset(excess - 1).limit(1)).scalar_one()
                cutoff = max(cutoff, nth + 1)
            conn.execute(spans.delete().where(spans.c.start_ns < cutoff))
            conn.execute(traces.delete().where(traces.c.start_ns < cutoff))
            conn.execute(events.delete().where(events.c.expires_ns < now_ns))

    def log_event(self, event: dict[str, Any], ttl_seconds: int) -> None:
        """A Llama Stack event: span_start / span_end build spans; logs and metric points are kept for their TTL."""
        t = to_ns(event["timestamp"])
        attrs = event.get("attributes") or {}
        payload = event.get("payload") or {}
        try:
            self._log_event(event, t, attrs, payload, ttl_seconds)
        except sa.exc.IntegrityError:
            raise ConflictError(f"span {event['span_id']} was already started", code="span_exists") from None

    def _log_event(self, event: dict[str, Any], t: int, attrs: dict, payload: dict, ttl_seconds: int) -> None:
        with self.db.begin() as conn:
            if event["type"] == "structured_log" and payload.get("type") == "span_start":
                parent = payload.get("parent_span_id")
                root = {ROOT_ATTRIBUTE: True} if parent is None else {}
                conn.execute(spans.insert().values(
                    span_id=event["span_id"], trace_id=event["trace_id"], parent_span_id=parent,
                    name=payload["name"], kind="internal", start_ns=t, attributes={**attrs, **root}, events=[]))
                if parent is None:
                    self._upsert_trace(conn, event["trace_id"], event["span_id"], t, None)
            elif event["type"] == "structured_log":
                row = conn.execute(sa.select(spans.c.attributes).where(spans.c.span_id == event["span_id"],
                                                                       spans.c.trace_id == event["trace_id"])).first()
                if row is None:
                    raise NotFoundError(f"span {event['span_id']} of trace {event['trace_id']} was never started")
                conn.execute(spans.update().where(spans.c.span_id == event["span_id"]).values(
                    end_ns=t, status=payload["status"], attributes={**row.attributes, **attrs}))
                if row.attributes.get(ROOT_ATTRIBUTE):
                    self._upsert_trace(conn, event["trace_id"], event["span_id"], t, t)
            else:
                body = {k: v for k, v in event.items() if k not in ("trace_id", "span_id", "timestamp", "type")}
                conn.execute(events.insert().values(trace_id=event["trace_id"], span_id=event["span_id"],
                                                    type=event["type"], time_ns=t,
                                                    expires_ns=t + int(ttl_seconds * 1e9), body=body))

    # ---- reading (the Llama Stack 0.2 shapes) ---------------------------------------------------------------

    def query_traces(self, filters: list[dict[str, Any]] | None = None, limit: int = 100, offset: int = 0,
                     order_by: list[str] | None = None) -> list[dict[str, Any]]:
        """Traces with at least one span matching every filter (on that one span), ordered, paginated."""
        q = sa.select(traces)
        if filters:
            matching = sa.select(spans.c.trace_id).where(*[_condition(f["key"], f["op"], f["value"])
                                                          for f in filters])
            q = q.where(traces.c.trace_id.in_(matching))
        order = []
        for field in order_by or ["-start_time"]:
            name = field.lstrip("-")
            if name not in _ORDER_FIELDS:
                raise InvalidRequestError(f"cannot order traces by '{name}' ({', '.join(_ORDER_FIELDS)})",
                                          param="order_by")
            order.append(_ORDER_FIELDS[name].desc() if field.startswith("-") else _ORDER_FIELDS[name].asc())
        with self.db.connect() as conn:
            rows = conn.execute(q.order_by(*order).limit(limit).offset(offset)).all()
        return [_trace(r) for r in rows]

    def get_trace(self, trace_id: str) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = conn.execute(sa.select(traces).where(traces.c.trace_id == trace_id)).first()
        if row is None:
            raise NotFoundError(f"trace {trace_id} not found", code="trace_not_found")
        return _trace(row)

    def get_span(self, trace_id: str, span_id: str) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = conn.execute(sa.select(spans).where(spans.c.trace_id == trace_id,
                                                      spans.c.span_id == span_id)).first()
        if row is None:
            raise NotFoundError(f"span {span_id} of trace {trace_id} not found", code="span_not_found")
        return _span(row)

    def span_tree(self, span_id: str, attributes_to_return: list[str] | None = None,
                  max_depth: int | None = None) -> dict[str, dict[str, Any]]:
        """{span_id: span with status} for a span and its descendants (depth 1 is the span itself)."""
        out: dict[str, dict[str, Any]] = {}
        with self.db.connect() as conn:
            level = conn.execute(sa.select(spans).where(spans.c.span_id == span_id)).all()
            if not level:
                raise NotFoundError(f"span {span_id} not found", code="span_not_found")
            depth = 1
            while level:
                for row in sorted(level, key=lambda r: r.start_ns):
                    out[row.span_id] = _span(row, attributes_to_return, with_status=True)
                if max_depth is not None and depth >= max_depth:
                    break
                ids = [r.span_id for r in level]
                level = conn.execute(sa.select(spans).where(spans.c.parent_span_id.in_(ids))).all()
                depth += 1
        return out

    def query_spans(self, filters: list[dict[str, Any]], attributes_to_return: list[str],
                    max_depth: int | None = None) -> list[dict[str, Any]]:
        """The spans of every matching trace (from its root) that carry all of `attributes_to_return`."""
        found = []
        for t in self.query_traces(filters, limit=1000):
            for s in self.span_tree(t["root_span_id"], attributes_to_return or None, max_depth).values():
                if all(s["attributes"].get(a) is not None for a in attributes_to_return):
                    found.append({k: v for k, v in s.items() if k != "status"})
        return found


def _trace(row: Any) -> dict[str, Any]:
    return {"trace_id": row.trace_id, "root_span_id": row.root_span_id, "start_time": iso(row.start_ns),
            "end_time": iso(row.end_ns)}


def _span(row: Any, attributes_to_return: list[str] | None = None, with_status: bool = False) -> dict[str, Any]:
    attrs = row.attributes or {}
    if attributes_to_return:
        attrs = {k: attrs.get(k) for k in attributes_to_return}
    span = {"span_id": row.span_id, "trace_id": row.trace_id, "parent_span_id": row.parent_span_id,
            "name": row.name, "start_time": iso(row.start_ns), "end_time": iso(row.end_ns), "attributes": attrs}
    if with_status:
        span["status"] = row.status
    return span
