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


class EngineLoad(BaseModel):
    """An LLM deployment's engine as one of its replicas reports it (`LLMServer.stats`, the figures the
    stackserve_num_requests_running / _waiting gauges sample)."""

    replica: str  # the replica that answered (with several, each call reaches one of them)
    running: int  # requests in the engine's batch
    waiting: int  # requests queued in the engine for a batch slot
    max_num_seqs: int  # batch slots
    kv_cache_usage: float | None = None  # fraction of KV-cache blocks in use (None: the engine does not say)


class GraphDeployment(BaseModel):
    name: str  # the Serve deployment's name: Ingress, LLM:<model>, Embeddings:<model>, VectorIO, ...
    status: str  # Ray Serve's DeploymentStatus (UPDATING, HEALTHY, UNHEALTHY, UPSCALING, DOWNSCALING, ...)
    message: str = ""
    replica_states: dict[str, int]  # Ray Serve's ReplicaState -> count (RUNNING, STARTING, ...)
    running_replicas: int
    target: ScalingTarget
    # LLM deployments with a running replica that answered within server.health_timeout_s; None elsewhere (Ray
    # Serve's status has no per-deployment request counts: those are only in its Prometheus metrics)
    engine: EngineLoad | None = None


class GraphStatus(BaseModel):
    object: Literal["stackserve.graph"] = "stackserve.graph"
    application: str  # the Serve application this ingress belongs to
    status: str  # Ray Serve's ApplicationStatus (RUNNING, DEPLOYING, ...)
    # the HTTP entry Serve runs (serve/data_plane.py): haproxy -> Ingress replicas, or Serve's Python proxy
    data_plane: Literal["haproxy", "serve_proxy"]
    deployments: list[GraphDeployment]
