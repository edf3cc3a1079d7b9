"""Served models: LLMs (each on its own LLM deployment and engine) and embedding models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from serve.config.base import DeploymentOptions, _Strict, default_deployment
from serve.config.engine import EngineConfig, MetaReferenceEngineConfig
from serve.config.routing import RoutingConfig


class ModelConfig(_Strict):
    """One served model. `source` is a local HF checkpoint directory or a built-in name (see model_store)."""

    model_id: str
    source: str
    aliases: list[str] = Field(default_factory=list)  # more names clients may send for this model (not listed)
    provider_id: str | None = None
    engine: EngineConfig = Field(default_factory=MetaReferenceEngineConfig)
    deployment: DeploymentOptions = default_deployment(num_cpus=1)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)  # which replica a request goes to
    # true: the engine runs inside the Ingress replicas, which answer this model's chat/completions/messages calls
    # themselves (no Ingress -> LLM hop, no per-token relay); the Ingress then takes this model's `deployment`
    # scaling, resources and router. One model per config at most; the others keep their own LLM deployments.
    in_ingress: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, v: str) -> str:
        if not v.strip() or v != v.strip():
            raise ValueError("model_id must be a non-empty string without surrounding spaces")
        return v

    @property
    def provider(self) -> str:
        return self.provider_id or self.engine.type

    def serve_options(self, ingress: DeploymentOptions | None = None) -> dict[str, Any]:
        """The LLM deployment's Ray Serve options: the deployment section (with the LLM autoscaling defaults for
        this engine), its request router and the engine's placement group. `ingress`: the Ingress's own options,
        for the Ingress replica that hosts this engine (`in_ingress`): it asks for both's CPUs and takes the
        larger of their `max_ongoing_requests`."""
        deployment = self.deployment
        if ingress is not None:
            actor = dict(deployment.ray_actor_options)
            actor["num_cpus"] = actor.get("num_cpus", 1) + ingress.ray_actor_options.get("num_cpus", 0)
            deployment = deployment.model_copy(update={
                "ray_actor_options": actor,
                "max_ongoing_requests": max(deployment.max_ongoing_requests, ingress.max_ongoing_requests)})
        opts = deployment.serve_options(llm_max_num_seqs=self.engine.max_num_seqs)
        return {**opts, **self.routing.serve_options(deployment.multi_replica, self.engine.max_num_seqs),
                **self.engine.placement(opts.get("ray_actor_options", {}))}


class EmbeddingModelConfig(_Strict):
    """One embedding model on its own Embeddings deployment (sentence-transformers, dynamic batching)."""

    model_id: str
    source: str  # a local sentence-transformers directory or a built-in (see deployments/vector_io/embedding_model)
    aliases: list[str] = Field(default_factory=list)  # e.g. all-MiniLM-L6-v2, as Llama Stack distributions name it
    provider_id: str = "sentence-transformers"
    device: str = "cpu"
    # bfloat16 runs the model under autocast: 2.0x the texts/s of float32 on an AVX512-BF16 CPU (MiniLM, 256-token
    # chunks), cosine >= 0.9999 to the float32 vectors (benchmarks/results/vector_io_cpu.md)
    dtype: Literal["float32", "bfloat16"] = "float32"
    metadata: dict[str, Any] = Field(default_factory=dict)
    num_threads: int | None = Field(default=None, ge=1)
    max_batch_size: int = Field(default=64, ge=1, le=1024)
    # 0: a call goes as soon as the model is free; requests arriving meanwhile share the next one (batcher.py)
    batch_wait_timeout_s: float = Field(default=0.0, ge=0, le=1)
    deployment: DeploymentOptions = default_deployment(num_cpus=0.5)

    @property
    def provider(self) -> str:
        return self.provider_id
