"""The graph's deployments with their replicas, read from Ray Serve's controller (`serve.status()`), next to the
scaling each one's config asks for (serve/deploy_config.py). Read-only; what `/v1/stackserve/graph` returns."""

from __future__ import annotations

import asyncio
from typing import Any

from serve.config import StackConfig
from serve.deploy_config import deployment_options
from serve.protocol.graph_status import GraphDeployment, GraphStatus, ScalingTarget


def scaling_target(options: dict[str, Any]) -> ScalingTarget:
    scaling = options.get("autoscaling_config")
    if scaling is None:
        replicas = options.get("num_replicas")
        return ScalingTarget(num_replicas=replicas if isinstance(replicas, int) else 1)
    return ScalingTarget(min_replicas=scaling.get("min_replicas"), max_replicas=scaling.get("max_replicas"),
                         target_ongoing_requests=scaling.get("target_ongoing_requests"))


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
    return GraphStatus(application=app_name, status=status, deployments=deployments)


async def graph_status(config: StackConfig) -> GraphStatus:
    """Every deployment of this ingress's application (ingress first, as the graph builder binds them)."""
    return await asyncio.to_thread(_read, config)  # serve.status() is a blocking call to the controller
