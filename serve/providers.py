"""What `/v1/providers`, `/v1/health` and `/v1/inspect/routes` report: the providers this graph runs, each with
its health as its deployment reports it.

A provider is listed only when the config has what runs it: the served models (one inference provider per
`provider_id`, typed by the engine that really runs), the service nodes of serve/nodes.py, and the span store
behind the telemetry API. Each entry's health comes from asking its deployment (`health()`, serve/health.py)
with `server.health_timeout_s`; an inference provider is as healthy as the least healthy of its models.
"""

from __future__ import annotations

import asyncio
from typing import Any

from serve.config import StackConfig
from serve.health import ask, error, run_checks, worst
from serve.nodes import NODES, provider

# endpoint family (router tag) -> the Llama Stack API its routes belong to (/v1/inspect/routes)
ROUTE_APIS = {"inference": "inference", "messages": "inference", "embeddings": "inference", "models": "inference",
              "files": "files", "vector_stores": "vector_io", "vector_io": "vector_io", "safety": "safety",
              "agents": "agents", "responses": "agents", "tools": "tool_runtime", "datasets": "datasetio",
              "batches": "batches", "telemetry": "telemetry"}


async def _within(call: Any, timeout_s: float) -> Any:
    async def answer() -> Any:
        return await call

    return await asyncio.wait_for(answer(), timeout_s)


async def _llm_provider_type(model: Any, timeout_s: float) -> str:
    """What the model's engine reports it is (asked once); until it answers, what its config runs."""
    if not model.info:
        try:
            model.info.update(await _within(model.handle.model_info.remote(), timeout_s))
        except Exception:  # noqa: BLE001  (loading, or unhealthy: its health says which)
            return f"inline::{model.config.engine.type}"
    return model.info["provider_type"]


async def _inference(stack: Any, timeout_s: float) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    by_id: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for m in stack.models.values():
        ptype = (await _llm_provider_type(m, timeout_s) if m.model_type == "llm"
                 else "inline::sentence-transformers")
        entry, handles = by_id.setdefault(m.config.provider, (
            {**provider("inference", m.config.provider, ptype), "config": {"models": []}}, {}))
        entry["config"]["models"].append(m.config.model_id)
        handles[f"model {m.config.model_id}"] = m.handle
    return list(by_id.values())


def _telemetry(config: StackConfig) -> dict[str, Any] | None:
    t = config.telemetry
    if not (t.tracing and t.span_store.enabled):
        return None
    return provider("telemetry", "meta-reference", "inline::meta-reference",
                    {"sinks": ["span_store"] + (["otlp"] if t.otlp else []) + (["console"] if t.console else [])})


async def list_providers(stack: Any, health: bool = True) -> list[dict[str, Any]]:
    """Every provider the graph runs; with `health`, each with its deployment's report."""
    timeout_s = stack.config.server.health_timeout_s
    entries = await _inference(stack, timeout_s)
    for node in NODES:
        if stack.has(node.name):
            entries += [(p, {node.name: stack.deployments[node.name]}) for p in node.providers(stack.config)]
    telemetry = _telemetry(stack.config)
    if not health:
        return [e for e, _ in entries] + ([telemetry] if telemetry else [])
    handles = {name: h for _, named in entries for name, h in named.items()}
    reports = dict(zip(handles, await asyncio.gather(*(ask(h.health.remote, timeout_s) for h in handles.values())),
                       strict=True))
    out = []
    for entry, named in entries:
        own = {name: reports[name] for name in named}
        out.append({**entry, "health": next(iter(own.values())) if len(own) == 1 else worst(own)})
    if telemetry:
        out.append({**telemetry, "health": await _span_store_health()})
    return out


async def _span_store_health() -> dict[str, str]:
    from serve.telemetry.tracing import span_store

    store = span_store()
    if store is None:
        return error("the span store is not running in this ingress replica")
    return await run_checks(store.db.ping)


async def stack_health(stack: Any) -> dict[str, str]:
    """`/v1/health`: OK when every provider is; only the status (the route is open to anyone: the reasons are in
    `/v1/providers`)."""
    providers = await list_providers(stack)
    return {"status": "OK" if all(p["health"]["status"] == "OK" for p in providers) else "Error"}


def route_provider_types(providers: list[dict[str, Any]], tags: list[str]) -> list[str]:
    """The provider types behind a route of these endpoint families (router tags)."""
    apis = {ROUTE_APIS[t] for t in tags if t in ROUTE_APIS}
    return sorted({p["provider_type"] for p in providers if p["api"] in apis})
