"""What the ingress replica's route handlers share: the config and a handle per served model.

Set once in the Ingress deployment's constructor; read by handlers through `get_stack()`. A module-level holder
(not app.state) because Ray Serve serves a deserialised copy of the FastAPI app inside the replica.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from serve.auth import Authenticator
from serve.config import EmbeddingModelConfig, ModelConfig, StackConfig
from serve.errors import InvalidRequestError, NotFoundError


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
    vector_io: Any = None  # DeploymentHandle of the VectorIO deployment, when configured
    safety: Any = None  # DeploymentHandle of the Safety deployment, when configured
    agents: Any = None  # DeploymentHandle of the Agents deployment, when configured
    datasetio: Any = None  # DeploymentHandle of the DatasetIO deployment, when configured
    batches: Any = None  # DeploymentHandle of the Batches deployment, when configured

    @functools.cached_property
    def authenticator(self) -> Authenticator:
        """API keys -> principals, built once per replica from the config."""
        return Authenticator(self.config)

    def model(self, model_id: str, param: str = "model", model_type: str | None = None) -> ServedModel:
        m = self.models.get(model_id)
        if m is None:
            raise NotFoundError(f"The model '{model_id}' does not exist", param=param, code="model_not_found")
        if model_type is not None and m.model_type != model_type:
            raise InvalidRequestError(f"The model '{model_id}' is an {m.model_type} model, not an {model_type} "
                                      "model", param=param, code="wrong_model_type")
        return m

    def vector_io_handle(self) -> Any:
        if self.vector_io is None:
            raise NotFoundError("vector IO is not enabled in this stack's config", code="not_enabled")
        return self.vector_io

    def agents_handle(self) -> Any:
        if self.agents is None:
            raise NotFoundError("agents are not enabled in this stack's config", code="not_enabled")
        return self.agents

    def datasetio_handle(self) -> Any:
        if self.datasetio is None:
            raise NotFoundError("datasetio is not enabled in this stack's config", code="not_enabled")
        return self.datasetio

    def batches_handle(self) -> Any:
        if self.batches is None:
            raise NotFoundError("batches are not enabled in this stack's config", code="not_enabled")
        return self.batches


_stack: Stack | None = None


def set_stack(stack: Stack) -> None:
    global _stack
    _stack = stack


def get_stack() -> Stack:
    if _stack is None:
        raise RuntimeError("the stack is not initialised in this process")
    return _stack
