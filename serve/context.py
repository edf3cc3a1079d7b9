"""What the ingress replica's route handlers share: the config and a handle per served model.

Set once in the Ingress deployment's constructor; read by handlers through `get_stack()`. A module-level holder
(not app.state) because Ray Serve serves a deserialised copy of the FastAPI app inside the replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serve.config import ModelConfig, StackConfig
from serve.errors import NotFoundError


@dataclass
class ServedModel:
    config: ModelConfig
    handle: Any  # ray.serve.handle.DeploymentHandle to its LLM deployment
    info: dict[str, Any] = field(default_factory=dict)  # filled from the deployment (context length, ...)


@dataclass
class Stack:
    config: StackConfig
    models: dict[str, ServedModel]
    started_at: int = 0

    def model(self, model_id: str, param: str = "model") -> ServedModel:
        m = self.models.get(model_id)
        if m is None:
            raise NotFoundError(f"The model '{model_id}' does not exist", param=param, code="model_not_found")
        return m


_stack: Stack | None = None


def set_stack(stack: Stack) -> None:
    global _stack
    _stack = stack


def get_stack() -> Stack:
    if _stack is None:
        raise RuntimeError("the stack is not initialised in this process")
    return _stack
