"""The graph's deployments with their replicas, read from Ray Serve's controller (`serve.status()`), next to the
scaling each one's config asks for (serve/deploy_config.py), and for each deployment that runs an engine (an LLM
deployment, or the Ingress when a model is served `in_ingress`) its engine's running and waiting requests.
Read-only; what `/v1/stackserve/graph` returns."""

from __future__ import annotations

import asyncio
from typing import Any

from serve.config import StackConfig
from serve.data_plane import active_data_plane
from serve.deploy_config import deployment_options, llm_deployment_name
from serve.protocol.graph_status import EngineLoad, GraphDeployment, GraphStatus, ScalingTarget


def scaling_target(options: dict[str, Any]) -> ScalingTarget:
    scaling = options.get("autoscaling_config")
    if scaling is None:
        replicas = options.get("num_replicas")
        return ScalingTarget(num_replicas=replicas if isinstance(replicas, int) else 1)
    return ScalingTarget(min_replicas=scaling.get("min_replicas"), max_replicas=scaling.get("max_replicas"),
                         target_ongoing_requests=scaling.get("target_ongoing_requests"))


def engine_load(stats: dict[str, Any]) -> EngineLoad:
    """`LLMServer.stats()` (EngineStats' fields and the replica id) as the graph shows it."""
    total = stats.get("total_kv_blocks") or 0
    usage = 1.0 - stats.get("free_kv_blocks", 0) / total if total else None
    return EngineLoad(replica=stats["replica"], running=stats["running"], waiting=stats["waiting"],
                      max_num_seqs=stats["max_num_seqs"], kv_cache_usage=usage)


async def _ask_stats(handle: Any, timeout_s: float) -> EngineLoad | None:
    """One replica's engine figures, or None when none answers in time (starting, or busy past its
    max_ongoing_requests: the call waits behind the requests it would count)."""
    response = handle.stats.remote()

    async def answer() -> Any:
        return await response

    try:
        return engine_load(await asyncio.wait_for(answer(), timeout_s))
    except Exception:  # noqa: BLE001  (no figures is the answer; the status column says why)
        cancel = getattr(response, "cancel", None)
        if cancel is not None:
            cancel()
        return None


def _read(config: StackConfig) -> GraphStatus:
    from ray import serve

    app_name = serve.get_replica_context().app_name
    app = serve.status().applications.get(app_name)
    running = app.deployments if app is not None else {}
    deployments = []
    for name, options in deployment_options(config).items():
        seen = running.get(name)
        states = {str(getattr(s, "value", s)): n for s, n in (seen.replica_states if seen else {}).items()}
        deployments.append(GraphDeployment(
            name=name, status=str(getattr(seen.status, "value", seen.status)) if seen else "NOT_STARTED",
            message=seen.message if seen else "", replica_states=states, running_replicas=states.get("RUNNING", 0),
            target=scaling_target(options)))
    status = str(getattr(app.status, "value", app.status)) if app is not None else "NOT_STARTED"
    return GraphStatus(application=app_name, status=status, data_plane=active_data_plane(),
                       deployments=deployments)


async def graph_status(stack: Any) -> GraphStatus:
    """Every deployment of this ingress's application (ingress first, as the graph builder binds them); `stack`:
    serve/context.py's Stack (its config, and the handles of the LLM deployments to ask for their load)."""
    graph = await asyncio.to_thread(_read, stack.config)  # serve.status() is a blocking call to the controller
    llms = {llm_deployment_name(stack.config, m.config.model_id): m.handle
            for m in stack.models.values() if m.model_type == "llm"}
    asked = [d for d in graph.deployments if d.name in llms and d.running_replicas]
    timeout_s = stack.config.server.health_timeout_s
    loads = await asyncio.gather(*(_ask_stats(llms[d.name], timeout_s) for d in asked))
    for d, load in zip(asked, loads, strict=True):
        d.engine = load
    return graph
