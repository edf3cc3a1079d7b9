"""The Ingress deployment: the FastAPI app served by Ray Serve, holding a handle per model and per service node."""

from __future__ import annotations

import time

from ray import serve

from serve import bounded_receive
from serve.app import create_app
from serve.config import StackConfig
from serve.context import ServedModel, Stack, set_stack
from serve.shared_limits import ReplicaLimiter, SharedLimiter
from serve.telemetry.instrument import instrument_deployment

app = create_app()


@serve.deployment
@serve.ingress(app)
@instrument_deployment
class Ingress:
    def __init__(self, config: StackConfig, llm_handles: dict, embedding_handles: dict, nodes: dict):
        bounded_receive.install()  # request bodies flow at the app's pace on Serve's direct ingress
        models = {m.model_id: ServedModel(m, llm_handles[m.model_id]) for m in config.models}
        models |= {m.model_id: ServedModel(m, embedding_handles[m.model_id], "embedding")
                   for m in config.embedding_models}
        limiter = ReplicaLimiter()
        if config.server.limits_scope == "shared":
            limiter = SharedLimiter(serve.get_replica_context().app_name)
        set_stack(Stack(config, models, started_at=int(time.time()), deployments=nodes, limiter=limiter))
