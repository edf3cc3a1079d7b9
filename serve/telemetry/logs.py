"""Structured logs: with `telemetry.log_format: json`, every `stackserve.*` log line is one JSON object carrying the
request id (the `x-request-id` of the HTTP request it serves, in any deployment) and the trace and span ids."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace

from serve.telemetry.propagation import request_id_from_context

# fields a caller may attach with `extra={...}` that the JSON line keeps
EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "model", "client")


def _serve_request_id() -> str | None:
    """Ray Serve carries the HTTP request id through handle calls; read it when tracing is off."""
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or None
    except Exception:  # outside a replica
        return None


class TraceContextFilter(logging.Filter):
    """Adds `request_id`, `trace_id` and `span_id` to each record (None where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else None
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else None
        record.request_id = request_id_from_context() or _serve_request_id()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, deployment: str):
        super().__init__()
        self.deployment = deployment

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                "deployment": self.deployment, "request_id": getattr(record, "request_id", None),
                "trace_id": getattr(record, "trace_id", None), "span_id": getattr(record, "span_id", None)}
        line |= {k: getattr(record, k) for k in EXTRA_FIELDS if hasattr(record, k)}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_json_logs(deployment: str, stream=None) -> logging.Handler:
    """Route the `stackserve` loggers through one JSON handler (instead of the root logger's text)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter(deployment))
    root = logging.getLogger("stackserve")
    root.handlers = [h for h in root.handlers if not isinstance(h.formatter, JsonFormatter)] + [handler]
    root.propagate = False
    if root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler
