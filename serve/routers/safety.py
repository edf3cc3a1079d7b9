"""Shields registry, Llama Stack run-shield and OpenAI moderations, served by the Safety deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from serve.auth import require_admin
from serve.context import get_stack
from serve.errors import InvalidRequestError
from serve.ids import new_id
from serve.protocol.llama_safety import ListShieldsResponse, RunShieldResponse, Shield
from serve.protocol.openai_moderations import ModerationResponse
from serve.protocol.openapi_bodies import NULL_BODY, AsWrittenRoute

router = APIRouter(route_class=AsWrittenRoute, tags=["safety"])  # under /v1 only (Llama Stack routes)
openai_router = APIRouter(tags=["safety"])  # under both prefixes


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RegisterShieldRequest(_Lenient):
    shield_id: str = Field(min_length=1, max_length=256)
    provider_shield_id: str | None = None
    provider_id: str | None = None
    params: dict[str, Any] | None = None


class RunShieldRequest(_Lenient):
    shield_id: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] | None = None


class ModerationRequest(_Lenient):
    input: str | list[str]
    model: str | None = None


@router.get("/shields", response_model=ListShieldsResponse)
async def list_shields() -> dict[str, Any]:
    return {"data": await get_stack().safety().list_shields.remote()}


@router.get("/shields/{shield_id:path}", response_model=Shield)
async def get_shield(shield_id: str) -> dict[str, Any]:
    return await get_stack().safety().get_shield.remote(shield_id)


@router.post("/shields", response_model=Shield)
async def register_shield(body: RegisterShieldRequest) -> dict[str, Any]:
    require_admin("registering a shield")
    return await get_stack().safety().register_shield.remote(body.shield_id, body.provider_id, body.provider_shield_id,
                                                  body.params or {})


@router.delete("/shields/{shield_id:path}", responses=NULL_BODY)
async def delete_shield(shield_id: str) -> None:
    require_admin("deleting a shield")
    await get_stack().safety().delete_shield.remote(shield_id)


@router.post("/safety/run-shield", response_model=RunShieldResponse)
async def run_shield(body: RunShieldRequest) -> dict[str, Any]:
    if not body.messages:
        raise InvalidRequestError("messages must not be empty", param="messages")
    return await get_stack().safety().run_shield.remote(body.shield_id, body.messages, body.params)


@openai_router.post("/moderations", response_model=ModerationResponse)
async def moderations(body: ModerationRequest) -> dict[str, Any]:
    from deployments.safety.llama_guard import OPENAI_CATEGORIES, OPENAI_KEYS

    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise InvalidRequestError("input must be a non-empty string or list of non-empty strings", param="input")
    safety = get_stack().safety()
    shield = body.model
    if shield is None:
        shields = await safety.list_shields.remote()
        if not shields:
            raise InvalidRequestError("no shields are registered", param="model")
        shield = shields[0]["identifier"]
    results = []
    for r in await safety.moderate.remote(shield, texts):
        cats = {k: False for k in OPENAI_KEYS}
        for code in r["codes"]:
            for key in OPENAI_CATEGORIES.get(code, []):
                cats[key] = True
        cats.update(r["categories"])
        scores = {k: (r.get("scores") or {}).get(k, 1.0 if v else 0.0) for k, v in cats.items()}
        results.append({"flagged": r["flagged"], "categories": cats, "category_scores": scores,
                        "category_applied_input_types": {k: ["text"] if v else [] for k, v in cats.items()},
                        "user_message": r["user_message"], "metadata": r["metadata"]})
    return {"id": new_id("modr", "-"), "model": shield, "results": results}
