"""Telemetry: OpenTelemetry tracing (exporters, the built-in span store), Ray metrics and the log format."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serve.config.base import _Strict


class OTLPExporterConfig(_Strict):
    """OTLP over HTTP (protobuf) to a collector: `endpoint` is its base URL (`/v1/traces` is appended)."""

    endpoint: str = "http://127.0.0.1:4318"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)


class SpanStoreConfig(_Strict):
    """The built-in span store behind the /v1/telemetry API: SQL, bounded by age and by span count."""

    enabled: bool = True
    url: str | None = None  # SQLAlchemy URL; default sqlite:///<data_dir>/telemetry.db
    retention_hours: float = Field(default=168.0, gt=0)  # Llama Stack's default event TTL: 7 days
    max_spans: int = Field(default=200_000, ge=100)


class TelemetryConfig(_Strict):
    """Tracing (OpenTelemetry spans across the graph), Ray metrics and log format. Tracing off costs nothing."""

    tracing: bool = False
    service_name: str = "stackserve"
    sampling_ratio: float = Field(default=1.0, ge=0, le=1)  # for new traces; a client's sampled flag is kept
    export_interval_ms: int = Field(default=500, ge=10, le=60_000)  # batch export delay
    otlp: OTLPExporterConfig | None = None
    console: bool = False
    span_store: SpanStoreConfig = Field(default_factory=SpanStoreConfig)
    metrics: bool = True  # serving metrics through Ray's metrics system (Prometheus)
    metrics_export_port: int | None = Field(default=None, ge=1, le=65535)  # `stackserve run`: Ray's /metrics port
    log_format: Literal["text", "json"] = "text"  # json: one object per line with request and trace ids
