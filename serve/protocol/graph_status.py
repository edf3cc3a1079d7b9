"""`GET /v1/stackserve/graph`: the graph's deployments as Ray Serve runs them (stackserve's own route)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ScalingTarget(BaseModel):
    """What the config asks of a deployment: a fixed replica count, or autoscaling bounds."""

    num_replicas: int | None = None  # fixed count (None with autoscaling)
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None


class GraphDeployment(BaseModel):
    name: str  # the Serve deployment's name: Ingress, LLM:<model>, Embeddings:<model>, VectorIO, ...
    status: str  # Ray Serve's DeploymentStatus (UPDATING, HEALTHY, UNHEALTHY, UPSCALING, DOWNSCALING, ...)
    message: str = ""
    replica_states: dict[str, int]  # Ray Serve's ReplicaState -> count (RUNNING, STARTING, ...)
    running_replicas: int
    target: ScalingTarget


class GraphStatus(BaseModel):
    object: Literal["stackserve.graph"] = "stackserve.graph"
    application: str  # the Serve application this ingress belongs to
    status: str  # Ray Serve's ApplicationStatus (RUNNING, DEPLOYING, ...)
    deployments: list[GraphDeployment]
