"""The Ingress deployment: the FastAPI app served by Ray Serve, holding a handle per model and per service node.

`EngineIngress` is the same, and also runs one model's engine (`in_ingress`): its requests for that model go to the
engine in-process, and its `LLMEndpoints` methods serve the other deployments' calls for that model."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ray import serve

from deployments.inference.deployment import LLMEndpoints
from serve import bounded_receive
from serve.app import create_app
from serve.config import StackConfig
from serve.context import ServedModel, Stack, set_stack
from serve.local_handle import LocalHandle
from serve.shared_limits import ReplicaLimiter, SharedLimiter
from serve.telemetry.instrument import instrument_deployment

if TYPE_CHECKING:
    from deployments.inference.engines import EngineFactory

app = create_app()
engine_app = create_app()


class _IngressBase:
    def __init__(self, config: StackConfig, llm_handles: dict, embedding_handles: dict, nodes: dict):
        bounded_receive.install()  # request bodies flow at the app's pace on Serve's direct ingress
        models = {m.model_id: ServedModel(m, llm_handles[m.model_id]) for m in config.models}
        models |= {m.model_id: ServedModel(m, embedding_handles[m.model_id], "embedding")
                   for m in config.embedding_models}
        limiter = ReplicaLimiter()
        if config.server.limits_scope == "shared":
            limiter = SharedLimiter(serve.get_replica_context().app_name)
        set_stack(Stack(config, models, started_at=int(time.time()), deployments=nodes, limiter=limiter))


@serve.deployment
@serve.ingress(app)
@instrument_deployment
class Ingress(_IngressBase):
    pass


@serve.deployment
@serve.ingress(engine_app)
@instrument_deployment
class EngineIngress(LLMEndpoints, _IngressBase):
    """The Ingress with `config.ingress_model()`'s engine in its replicas (`engine_factory` as LLMServer's)."""

    def __init__(self, config: StackConfig, llm_handles: dict, embedding_handles: dict, nodes: dict,
                 model_cache_dir: str, engine_factory: EngineFactory | None = None):
        model = config.ingress_model()
        self.load_engine(model, model_cache_dir, engine_factory)
        super().__init__(config, {**llm_handles, model.model_id: LocalHandle(self)}, embedding_handles, nodes)
