"""GET /models and /models/{id}: objects with both OpenAI and Llama Stack fields."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.context import ServedModel, get_stack
from serve.protocol.openai_models import ModelList, ModelObject

router = APIRouter(tags=["models"])


def model_object(m: ServedModel, created: int) -> dict[str, Any]:
    cfg = m.config
    return {
        # OpenAI
        "id": cfg.model_id,
        "object": "model",
        "created": created,
        "owned_by": "stackserve",
        # Llama Stack 0.2
        "identifier": cfg.model_id,
        "provider_id": cfg.provider,
        "provider_resource_id": cfg.source,
        "model_type": m.model_type,
        "type": "model",
        "metadata": {**m.info, **({"aliases": cfg.aliases} if cfg.aliases else {}), **cfg.metadata},
    }


async def _with_info(m: ServedModel) -> ServedModel:
    if not m.info:  # context length etc. come from the deployment once it has loaded its model
        m.info.update(await m.handle.model_info.remote())
    return m


@router.get("/models", response_model=ModelList)
async def list_models() -> dict[str, Any]:
    stack = get_stack()
    for m in stack.models.values():
        await _with_info(m)
    return {"object": "list", "data": [model_object(m, stack.started_at) for m in stack.models.values()]}


@router.get("/models/{model_id:path}", response_model=ModelObject)
async def get_model(model_id: str) -> dict[str, Any]:
    stack = get_stack()
    return model_object(await _with_info(stack.model(model_id, param="model_id")), stack.started_at)
