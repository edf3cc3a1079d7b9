"""Telemetry: OpenTelemetry traces across the deployment graph, serving metrics through Ray, structured logs.

- instrument.py: `@instrument_deployment`, the one hook per deployment class (setup, context across handles)
- tracing.py: the process's TracerProvider and the span helpers (`span`, `traced`)
- propagation.py: W3C trace context over DeploymentHandle calls
- http.py: the ingress's server span per HTTP request (traceparent in, x-trace-id out)
- genai.py, agents.py: inference / embeddings / agent spans with GenAI semantic-convention attributes
- metrics.py: Ray metrics (TTFT, inter-token latency, e2e, tokens, engine gauges, search/shield/embedding latency)
- store.py, tables.py, exporters.py: the SQL span store behind /v1/telemetry, OTLP/HTTP and console export
- logs.py: JSON log lines with request and trace ids
"""
