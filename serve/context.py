"""What the ingress replica's route handlers share: the config, a handle per served model and per deployment.

Set once in the Ingress deployment's constructor; read by handlers through `get_stack()`. A module-level holder
(not app.state) because Ray Serve serves a deserialised copy of the FastAPI app inside the replica.

Routers reach deployments only through the accessors below, one per deployment (`stack.llm(model)`,
`stack.vector_io()`, ...), and call the deployment's typed methods on the handle they return.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from serve.auth import Authenticator
from serve.config import EmbeddingModelConfig, ModelConfig, StackConfig
from serve.errors import InvalidRequestError, NotFoundError
from serve.shared_limits import Limiter, ReplicaLimiter
from serve.storage.blobs import BlobStore


@dataclass
class ServedModel:
    config: ModelConfig | EmbeddingModelConfig
    handle: Any  # ray.serve.handle.DeploymentHandle to its LLM or Embeddings deployment
    model_type: str = "llm"  # "llm" | "embedding"
    info: dict[str, Any] = field(default_factory=dict)  # filled from the deployment (context length, ...)


@dataclass
class Stack:
    config: StackConfig
    models: dict[str, ServedModel]
    started_at: int = 0
    # DeploymentHandles of the optional deployments by graph name ("VectorIO", "Safety", "Agents", "DatasetIO",
    # "Batches"); absent when the config leaves that deployment out
    deployments: dict[str, Any] = field(default_factory=dict)
    # the principals' request limits: this replica's own buckets, or the application's shared limiter actor
    limiter: Limiter = field(default_factory=ReplicaLimiter)

    @functools.cached_property
    def authenticator(self) -> Authenticator:
        """API keys -> principals, built once per replica from the config."""
        return Authenticator(self.config)

    @functools.cached_property
    def blobs(self) -> BlobStore:
        """The graph's blob store (`storage.blob_url`), opened once per replica: the ingress streams file uploads
        into it and downloads out of it (serve/file_blobs.py)."""
        from serve.storage import open_blob_store

        return open_blob_store(self.config.blob_url(), self.config.database_url())

    @functools.cached_property
    def health_probe(self) -> Any:
        """`/v1/health`'s answer, shared by the requests of one second (serve/providers.py stack_health)."""
        from serve.health import SharedProbe
        from serve.providers import stack_health

        return SharedProbe(lambda: stack_health(self))

    def model(self, model_id: str, param: str = "model", model_type: str | None = None) -> ServedModel:
        m = self.models.get(model_id) or self.models.get(self.config.model_aliases().get(model_id, ""))
        if m is None:
            raise NotFoundError(f"The model '{model_id}' does not exist", param=param, code="model_not_found")
        if model_type is not None and m.model_type != model_type:
            raise InvalidRequestError(f"The model '{model_id}' is an {m.model_type} model, not an {model_type} "
                                      "model", param=param, code="wrong_model_type")
        return m

    def llm(self, model_id: str, param: str = "model") -> Any:
        """Handle of the LLM deployment serving `model_id` (deployments/inference/deployment.py LLMServer)."""
        return self.model(model_id, param, "llm").handle

    def embeddings(self, model_id: str, param: str = "model") -> Any:
        """Handle of the Embeddings deployment serving `model_id` (EmbeddingsServer)."""
        return self.model(model_id, param, "embedding").handle

    def _deployment(self, name: str, what: str) -> Any:
        handle = self.deployments.get(name)
        if handle is None:
            raise NotFoundError(f"{what} is not enabled in this stack's config", code="not_enabled")
        return handle

    def has(self, name: str) -> bool:
        return name in self.deployments

    def vector_io(self) -> Any:
        """Handle of the VectorIO deployment (deployments/vector_io/deployment.py VectorIOServer)."""
        return self._deployment("VectorIO", "vector IO")

    def safety(self) -> Any:
        """Handle of the Safety deployment (deployments/safety/deployment.py SafetyServer)."""
        return self._deployment("Safety", "safety")

    def agents(self) -> Any:
        """Handle of the Agents deployment (deployments/agents/deployment.py AgentsServer)."""
        return self._deployment("Agents", "agents")

    def datasetio(self) -> Any:
        """Handle of the DatasetIO deployment (deployments/datasets/deployment.py DatasetIOServer)."""
        return self._deployment("DatasetIO", "datasetio")

    def batches(self) -> Any:
        """Handle of the Batches deployment (deployments/batches/deployment.py BatchesServer)."""
        return self._deployment("Batches", "batches")


SESSION_HEADER = "x-session-id"  # Ray Serve's name for a client's session header, and ours


def with_session(handle: Any, *keys: str | None) -> Any:
    """`handle` with Serve's `session_id` set to the first of `keys` given (most specific first): the request
    router of an LLM deployment (deployments/inference/router.py) keeps one session on one replica."""
    key = next((k for k in keys if k), None)
    return handle.options(session_id=key) if key else handle


_stack: Stack | None = None


def set_stack(stack: Stack) -> None:
    global _stack
    _stack = stack


def get_stack() -> Stack:
    if _stack is None:
        raise RuntimeError("the stack is not initialised in this process")
    return _stack
